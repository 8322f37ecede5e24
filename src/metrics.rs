//! Metrics: the counters a worker keeps, the [`WorkerReport`] of deltas it sends to the
//! supervisor, the supervisor's per-worker [`Totals`], and their text renderings (Prometheus
//! exposition format, the JSON of the status page, the connection progress line and the
//! periodic summary).
//!
//! Plain data and pure functions: no I/O, no locks, no clocks read (callers pass `Instant`s).

use crate::http::Status;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Number of latency buckets: bucket `i` (0..=26) counts samples of at most 2^i µs
/// (1 µs to about 67 s); the last bucket counts everything slower (+Inf).
pub const LATENCY_BUCKETS: usize = 28;

const FINITE_BUCKETS: usize = LATENCY_BUCKETS - 1;

/// Request latency in µs, in power-of-two buckets: see [`LATENCY_BUCKETS`].
pub type Latency = Histogram<0, LATENCY_BUCKETS>;

/// A histogram of `u64` samples in `N` log-linear buckets (HdrHistogram's layout), not
/// cumulative. Each power of two is split into `2^SUB_BITS` equal buckets, so a bucket is at
/// most `2^-SUB_BITS` of its values wide, and the `2^(SUB_BITS + 1)` smallest values have a
/// bucket each. Bounds are inclusive, like Prometheus's `le`: bucket `i` holds the samples above
/// [`Histogram::bound`]`(i - 1)` up to `bound(i)`; the last bucket holds everything above the one
/// before it (+Inf).
///
/// The server's request latency is [`Latency`] (`SUB_BITS` 0: powers of two); wsload records its
/// round trips with 64 buckets per power of two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram<const SUB_BITS: u32, const N: usize> {
    /// Samples per bucket.
    pub counts: [u64; N],
    /// Sum of all samples (saturating).
    pub sum: u64,
}

impl<const SUB_BITS: u32, const N: usize> Default for Histogram<SUB_BITS, N> {
    fn default() -> Self {
        Histogram {
            counts: [0; N],
            sum: 0,
        }
    }
}

impl<const SUB_BITS: u32, const N: usize> Histogram<SUB_BITS, N> {
    /// Adds one sample.
    pub fn record(&mut self, sample: u64) {
        let bucket = Self::bucket_of(sample);
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
        self.sum = self.sum.saturating_add(sample);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |sum, &n| sum.saturating_add(n))
    }

    /// The upper bound of the bucket holding quantile `q` (clamped to 0..=1);
    /// 0 when empty, `u64::MAX` when that bucket is +Inf.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        // The rank of the sample at quantile q, counting from 1 (NaN casts to 0).
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return Self::bound(bucket);
            }
        }
        u64::MAX
    }

    /// The inclusive upper bound of `bucket`; `u64::MAX` for the last (+Inf).
    pub fn bound(bucket: usize) -> u64 {
        if bucket + 1 >= N {
            return u64::MAX;
        }
        let (i, sub) = (bucket as u64, 1u64 << SUB_BITS);
        if i < 2 * sub {
            return i + 1;
        }
        // Bucket i holds `sample - 1` in [mantissa << shift, (mantissa + 1) << shift).
        let shift = (i / sub - 1).min(64);
        let mantissa = i - (i / sub - 1) * sub;
        u64::try_from(u128::from(mantissa + 1) << shift).unwrap_or(u64::MAX)
    }

    /// The bucket `sample` falls in: that of `sample - 1` in the half-open layout (`mantissa`
    /// the top SUB_BITS + 1 bits, `shift` the bits below them), so bounds are inclusive.
    fn bucket_of(sample: u64) -> usize {
        let x = sample.saturating_sub(1);
        let sub = 1u64 << SUB_BITS;
        let i = if x < 2 * sub {
            x
        } else {
            let shift = u64::from(u64::BITS - 1 - x.leading_zeros() - SUB_BITS);
            shift * sub + (x >> shift)
        };
        usize::try_from(i).map_or(N - 1, |i| i.min(N - 1))
    }

    /// Samples that arrived since `earlier` (a previous copy of this histogram).
    fn since(&self, earlier: &Self) -> Self {
        let mut delta = self.clone();
        for (now, then) in delta.counts.iter_mut().zip(earlier.counts) {
            *now = now.saturating_sub(then);
        }
        delta.sum = self.sum.saturating_sub(earlier.sum);
        delta
    }
}

/// One worker's counters (or a sum of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed (for any reason).
    pub closed: u64,
    /// Responses by status: index `i` counts `Status::SENT[i]`, the last any other code.
    pub requests: [u64; STATUS_SLOTS],
    /// Bytes written to clients (heads and bodies).
    pub bytes_sent: u64,
    /// Times the worker reached `--max-connections` and stopped accepting.
    pub accept_cap_pauses: u64,
    /// Times it resumed accepting after such a pause; paused now = pauses - resumes.
    pub accept_cap_resumes: u64,
    /// Requests answered 503 because a file could not be opened for lack of descriptors or
    /// memory.
    pub files_unavailable: u64,
    /// Request latency as measured by the worker.
    pub latency: Latency,
    /// WebSocket traffic.
    pub ws: WsCounters,
    /// TLS handshakes.
    pub tls: TlsCounters,
}

/// Responses are counted per status percore sends, plus one slot for any other code.
pub const STATUS_SLOTS: usize = Status::SENT.len() + 1;

/// A metric family rendered per worker: name, type, help, and how to read its value.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Close codes 1000..=1015 are counted one by one; every other code in the last slot.
pub const CLOSE_CODE_SLOTS: usize = 17;

/// WebSocket counters of one worker (or a sum of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsCounters {
    /// Successful upgrades (101 sent).
    pub upgrades: u64,
    /// WebSocket connections closed; open = upgrades - closed.
    pub closed: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    /// Payload bytes of messages received and sent.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Close frames sent and received, by code (see [`WsCounters::close_slot`]).
    pub close_sent: [u64; CLOSE_CODE_SLOTS],
    pub close_received: [u64; CLOSE_CODE_SLOTS],
}

impl WsCounters {
    /// The slot counting close code `code`.
    pub fn close_slot(code: u16) -> usize {
        match code {
            1000..=1015 => usize::from(code - 1000),
            _ => CLOSE_CODE_SLOTS - 1,
        }
    }

    /// The label of slot `i`: its code; "none" for a close frame without a code (counted as
    /// 1005, which RFC 6455 §7.4.1 forbids on the wire); "other" for the last slot.
    fn slot_label(i: usize) -> String {
        match i {
            5 => "none".to_owned(),
            _ if i + 1 == CLOSE_CODE_SLOTS => "other".to_owned(),
            _ => (1000 + i).to_string(),
        }
    }

    /// WebSocket connections open now.
    pub fn open(&self) -> u64 {
        self.upgrades.saturating_sub(self.closed)
    }

    fn add(&mut self, other: &WsCounters) {
        self.upgrades = self.upgrades.saturating_add(other.upgrades);
        self.closed = self.closed.saturating_add(other.closed);
        self.messages_in = self.messages_in.saturating_add(other.messages_in);
        self.messages_out = self.messages_out.saturating_add(other.messages_out);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        for (mine, theirs) in self.close_sent.iter_mut().zip(other.close_sent) {
            *mine = mine.saturating_add(theirs);
        }
        for (mine, theirs) in self.close_received.iter_mut().zip(other.close_received) {
            *mine = mine.saturating_add(theirs);
        }
    }
}

/// Why a TLS handshake did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// Bytes that are not a TLS handshake (garbage, a truncated or oversized message).
    Malformed,
    /// No protocol version, cipher suite or ALPN protocol in common.
    Incompatible,
    /// The client sent an alert (it did not trust the certificate, say).
    Alert,
    /// A plain HTTP request on a TLS port (answered 400).
    PlainHttp,
    /// The client stalled mid-handshake past the header timeout.
    Timeout,
    /// The client closed the connection mid-handshake.
    Closed,
    Other,
}

impl TlsFailure {
    const ALL: [TlsFailure; 7] = [
        TlsFailure::Malformed,
        TlsFailure::Incompatible,
        TlsFailure::Alert,
        TlsFailure::PlainHttp,
        TlsFailure::Timeout,
        TlsFailure::Closed,
        TlsFailure::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            TlsFailure::Malformed => "malformed",
            TlsFailure::Incompatible => "incompatible",
            TlsFailure::Alert => "alert",
            TlsFailure::PlainHttp => "plain_http",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
            TlsFailure::Other => "other",
        }
    }
}

/// What became of a finished TLS 1.3 session offered to the kernel (`--ktls true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelTlsResult {
    /// The kernel holds its keys and does its encryption.
    Offloaded,
    /// The session stayed in user space: the kernel does not take its cipher, or would not
    /// attach TLS to its socket.
    Declined,
    /// The kernel refused the keys after rustls gave them up: the connection was closed.
    Failed,
}

impl KernelTlsResult {
    const ALL: [KernelTlsResult; 3] = [
        KernelTlsResult::Offloaded,
        KernelTlsResult::Declined,
        KernelTlsResult::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            KernelTlsResult::Offloaded => "offloaded",
            KernelTlsResult::Declined => "declined",
            KernelTlsResult::Failed => "failed",
        }
    }
}

/// TLS handshakes of one worker (or a sum of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsCounters {
    /// Finished handshakes: `[tls13 as usize][resumed as usize]`.
    pub handshakes: [[u64; 2]; 2],
    /// Handshakes that did not finish, by [`TlsFailure`] (its place in `TlsFailure::ALL`).
    pub failures: [u64; 7],
    /// Sessions offered to the kernel, by [`KernelTlsResult`] (its place in its `ALL`).
    pub kernel: [u64; 3],
}

impl TlsCounters {
    /// One handshake finished.
    pub fn finished(&mut self, tls13: bool, resumed: bool) {
        let n = &mut self.handshakes[usize::from(tls13)][usize::from(resumed)];
        *n = n.saturating_add(1);
    }

    /// One handshake failed.
    pub fn failed(&mut self, why: TlsFailure) {
        if let Some(i) = TlsFailure::ALL.iter().position(|&f| f == why) {
            self.failures[i] = self.failures[i].saturating_add(1);
        }
    }

    /// One session was offered to the kernel.
    pub fn kernel(&mut self, result: KernelTlsResult) {
        if let Some(i) = KernelTlsResult::ALL.iter().position(|&r| r == result) {
            self.kernel[i] = self.kernel[i].saturating_add(1);
        }
    }

    fn add(&mut self, other: &TlsCounters) {
        for (mine, theirs) in self
            .handshakes
            .iter_mut()
            .flatten()
            .zip(other.handshakes.iter().flatten())
        {
            *mine = mine.saturating_add(*theirs);
        }
        for (mine, theirs) in self.failures.iter_mut().zip(other.failures) {
            *mine = mine.saturating_add(theirs);
        }
        for (mine, theirs) in self.kernel.iter_mut().zip(other.kernel) {
            *mine = mine.saturating_add(theirs);
        }
    }
}

impl Counters {
    /// Counts one response with `status`.
    pub fn record_status(&mut self, status: Status) {
        if let Some(n) = self.requests.get_mut(status.sent_index()) {
            *n = n.saturating_add(1);
        }
    }

    /// Responses whose status is in `class` (2 for 2xx).
    pub fn requests_in_class(&self, class: u16) -> u64 {
        Status::SENT
            .iter()
            .zip(self.requests)
            .filter(|(status, _)| status.code() / 100 == class)
            .fold(0, |sum, (_, n)| sum.saturating_add(n))
    }

    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &Counters) {
        self.accepted = self.accepted.saturating_add(other.accepted);
        self.closed = self.closed.saturating_add(other.closed);
        for (mine, theirs) in self.requests.iter_mut().zip(other.requests) {
            *mine = mine.saturating_add(theirs);
        }
        self.bytes_sent = self.bytes_sent.saturating_add(other.bytes_sent);
        self.accept_cap_pauses = self
            .accept_cap_pauses
            .saturating_add(other.accept_cap_pauses);
        self.accept_cap_resumes = self
            .accept_cap_resumes
            .saturating_add(other.accept_cap_resumes);
        self.files_unavailable = self
            .files_unavailable
            .saturating_add(other.files_unavailable);
        self.latency.merge(&other.latency);
        self.ws.add(&other.ws);
        self.tls.add(&other.tls);
    }

    /// Whether nothing was counted (a worker skips sending such a report).
    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }

    /// Responses of every class.
    pub fn total_requests(&self) -> u64 {
        self.requests
            .iter()
            .fold(0, |sum, &n| sum.saturating_add(n))
    }

    /// What was counted since `earlier`, a previous copy of these (cumulative) counters.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut requests = self.requests;
        for (now, then) in requests.iter_mut().zip(earlier.requests) {
            *now = now.saturating_sub(then);
        }
        Counters {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            closed: self.closed.saturating_sub(earlier.closed),
            requests,
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            accept_cap_pauses: self
                .accept_cap_pauses
                .saturating_sub(earlier.accept_cap_pauses),
            accept_cap_resumes: self
                .accept_cap_resumes
                .saturating_sub(earlier.accept_cap_resumes),
            files_unavailable: self
                .files_unavailable
                .saturating_sub(earlier.files_unavailable),
            latency: self.latency.since(&earlier.latency),
            ws: WsCounters {
                upgrades: self.ws.upgrades.saturating_sub(earlier.ws.upgrades),
                closed: self.ws.closed.saturating_sub(earlier.ws.closed),
                messages_in: self.ws.messages_in.saturating_sub(earlier.ws.messages_in),
                messages_out: self.ws.messages_out.saturating_sub(earlier.ws.messages_out),
                bytes_in: self.ws.bytes_in.saturating_sub(earlier.ws.bytes_in),
                bytes_out: self.ws.bytes_out.saturating_sub(earlier.ws.bytes_out),
                // Close codes are not differenced: no summary reports them.
                ..WsCounters::default()
            },
            // Nor are TLS handshakes.
            tls: TlsCounters::default(),
        }
    }

    /// Open connections: accepted minus closed.
    fn active(&self) -> u64 {
        self.accepted.saturating_sub(self.closed)
    }

    /// 1 while the worker holds `--max-connections` and leaves new connections queued.
    fn accept_paused(&self) -> u64 {
        self.accept_cap_pauses
            .saturating_sub(self.accept_cap_resumes)
    }
}

/// What a worker sends on the channel: the counters since its previous report.
#[derive(Clone, Debug)]
pub struct WorkerReport {
    /// The worker's index, 0..workers.
    pub worker: usize,
    /// Counts since the previous report of this worker.
    pub delta: Counters,
}

/// The supervisor's cumulative counters, one entry per worker.
#[derive(Clone, Debug)]
pub struct Totals {
    /// Per worker index: a reload's new generation reports into the same entries as the
    /// generation before it, so counters go on where they were.
    workers: Vec<Counters>,
    /// When each worker's latest report was applied; `None` before its first.
    reported: Vec<Option<Instant>>,
    /// Workers in the serving generation (`percore_workers`); there may be more entries, of a
    /// generation with more workers that is gone or finishing.
    current: usize,
}

impl Totals {
    /// All-zero totals for `workers` workers.
    pub fn new(workers: usize) -> Totals {
        Totals {
            workers: vec![Counters::default(); workers],
            reported: vec![None; workers],
            current: workers,
        }
    }

    /// A reload changed the number of workers to `workers`: entries are added as needed and
    /// never removed (a finishing generation still reports into them).
    pub fn resize(&mut self, workers: usize) {
        if workers > self.workers.len() {
            self.workers.resize(workers, Counters::default());
            self.reported.resize(workers, None);
        }
        self.current = workers;
    }

    /// Adds a report's delta to its worker, received at `now`; a report for an unknown worker
    /// is ignored.
    pub fn apply(&mut self, report: &WorkerReport, now: Instant) {
        if let Some(counters) = self.workers.get_mut(report.worker) {
            counters.add(&report.delta);
        }
        if let Some(at) = self.reported.get_mut(report.worker) {
            *at = Some(now);
        }
    }

    /// The cumulative counters of worker `i`.
    pub fn worker(&self, i: usize) -> Option<&Counters> {
        self.workers.get(i)
    }

    /// The counters of all workers added together.
    pub fn sum(&self) -> Counters {
        let mut sum = Counters::default();
        for counters in &self.workers {
            sum.add(counters);
        }
        sum
    }

    /// Open connections over all workers.
    pub fn active(&self) -> u64 {
        self.workers
            .iter()
            .fold(0, |sum, c| sum.saturating_add(c.active()))
    }

    /// The Prometheus text exposition format (version 0.0.4), one series per worker.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "percore_build_info",
            "gauge",
            "Always 1; the labels say which percore this is.",
        );
        let _ = writeln!(
            out,
            "percore_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        family(&mut out, "percore_workers", "gauge", "Worker threads.");
        let _ = writeln!(out, "percore_workers {}", self.current);
        self.per_worker(
            &mut out,
            ("percore_connections_accepted_total", "counter"),
            "Connections accepted.",
            |c| c.accepted,
        );
        self.per_worker(
            &mut out,
            ("percore_connections_closed_total", "counter"),
            "Connections closed.",
            |c| c.closed,
        );
        self.per_worker(
            &mut out,
            ("percore_connections_active", "gauge"),
            "Connections open now.",
            Counters::active,
        );
        self.per_worker(
            &mut out,
            ("percore_accept_cap_pauses_total", "counter"),
            "Times a worker reached --max-connections and stopped accepting.",
            |c| c.accept_cap_pauses,
        );
        self.per_worker(
            &mut out,
            ("percore_accept_paused", "gauge"),
            "1 while a worker holds --max-connections and new connections wait in the listen queue.",
            Counters::accept_paused,
        );
        let name = "percore_requests_total";
        family(
            &mut out,
            name,
            "counter",
            "Responses sent, by status code (and class).",
        );
        for (w, c) in self.workers.iter().enumerate() {
            for (i, &n) in c.requests.iter().enumerate().filter(|(_, &n)| n > 0) {
                let (code, class) = match Status::SENT.get(i) {
                    Some(status) => (
                        status.code().to_string(),
                        format!("{}xx", status.code() / 100),
                    ),
                    None => ("other".to_owned(), "other".to_owned()),
                };
                let _ = writeln!(
                    out,
                    "{name}{{worker=\"{w}\",code=\"{code}\",class=\"{class}\"}} {n}"
                );
            }
        }
        self.per_worker(
            &mut out,
            ("percore_response_bytes_total", "counter"),
            "Bytes sent to clients.",
            |c| c.bytes_sent,
        );
        self.per_worker(
            &mut out,
            ("percore_files_unavailable_total", "counter"),
            "Requests answered 503 because a file could not be opened for lack of descriptors or memory.",
            |c| c.files_unavailable,
        );
        self.render_latency(&mut out);
        self.render_ws(&mut out);
        self.render_tls(&mut out);
        out
    }

    fn render_tls(&self, out: &mut String) {
        let name = "percore_tls_handshakes_total";
        family(
            out,
            name,
            "counter",
            "TLS handshakes finished, by protocol version and kind (full or resumed).",
        );
        for (w, c) in self.workers.iter().enumerate() {
            for (version, by_kind) in ["1.2", "1.3"].iter().zip(&c.tls.handshakes) {
                for (kind, n) in ["full", "resumed"].iter().zip(by_kind) {
                    let _ = writeln!(
                        out,
                        "{name}{{worker=\"{w}\",version=\"{version}\",kind=\"{kind}\"}} {n}"
                    );
                }
            }
        }
        let name = "percore_tls_handshake_failures_total";
        family(
            out,
            name,
            "counter",
            "TLS handshakes that did not finish, by reason.",
        );
        for (w, c) in self.workers.iter().enumerate() {
            for (why, n) in TlsFailure::ALL.iter().zip(c.tls.failures) {
                let _ = writeln!(
                    out,
                    "{name}{{worker=\"{w}\",reason=\"{}\"}} {n}",
                    why.label()
                );
            }
        }
        let name = "percore_tls_kernel_offloads_total";
        family(
            out,
            name,
            "counter",
            "Finished TLS 1.3 sessions offered to the kernel (--ktls), by result.",
        );
        for (w, c) in self.workers.iter().enumerate() {
            for (result, n) in KernelTlsResult::ALL.iter().zip(c.tls.kernel) {
                let _ = writeln!(
                    out,
                    "{name}{{worker=\"{w}\",result=\"{}\"}} {n}",
                    result.label()
                );
            }
        }
    }

    fn render_ws(&self, out: &mut String) {
        let families: [Family<WsCounters>; 7] = [
            (
                "percore_ws_upgrades_total",
                "counter",
                "WebSocket upgrades accepted.",
                |w| w.upgrades,
            ),
            (
                "percore_ws_connections_active",
                "gauge",
                "WebSocket connections open now.",
                WsCounters::open,
            ),
            (
                "percore_ws_messages_received_total",
                "counter",
                "WebSocket messages received.",
                |w| w.messages_in,
            ),
            (
                "percore_ws_messages_sent_total",
                "counter",
                "WebSocket messages sent.",
                |w| w.messages_out,
            ),
            (
                "percore_ws_received_bytes_total",
                "counter",
                "WebSocket message payload bytes received.",
                |w| w.bytes_in,
            ),
            (
                "percore_ws_sent_bytes_total",
                "counter",
                "WebSocket message payload bytes sent.",
                |w| w.bytes_out,
            ),
            (
                "percore_ws_closed_total",
                "counter",
                "WebSocket connections closed.",
                |w| w.closed,
            ),
        ];
        for (name, kind, help, value) in families {
            self.per_worker(out, (name, kind), help, |c| value(&c.ws));
        }
        let name = "percore_ws_close_frames_total";
        family(
            out,
            name,
            "counter",
            "WebSocket close frames by direction and status code.",
        );
        for (w, c) in self.workers.iter().enumerate() {
            for (direction, slots) in [
                ("sent", &c.ws.close_sent),
                ("received", &c.ws.close_received),
            ] {
                for (i, &n) in slots.iter().enumerate().filter(|(_, &n)| n > 0) {
                    let code = WsCounters::slot_label(i);
                    let _ = writeln!(
                        out,
                        "{name}{{worker=\"{w}\",direction=\"{direction}\",code=\"{code}\"}} {n}"
                    );
                }
            }
        }
    }

    fn per_worker(
        &self,
        out: &mut String,
        (name, kind): (&str, &str),
        help: &str,
        value: impl Fn(&Counters) -> u64,
    ) {
        family(out, name, kind, help);
        for (w, c) in self.workers.iter().enumerate() {
            let _ = writeln!(out, "{name}{{worker=\"{w}\"}} {}", value(c));
        }
    }

    fn render_latency(&self, out: &mut String) {
        let name = "percore_request_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "Request latency as measured by the worker.",
        );
        for (w, c) in self.workers.iter().enumerate() {
            // Prometheus buckets are cumulative: each counts every sample up to its bound.
            let mut cumulative = 0u64;
            for (bucket, &n) in c.latency.counts.iter().enumerate() {
                cumulative = cumulative.saturating_add(n);
                let le = match Latency::bound(bucket) {
                    u64::MAX => "+Inf".to_owned(),
                    micros => seconds(micros),
                };
                let _ = writeln!(
                    out,
                    "{name}_bucket{{worker=\"{w}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = seconds(c.latency.sum);
            let _ = writeln!(out, "{name}_sum{{worker=\"{w}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{worker=\"{w}\"}} {}", c.latency.count());
        }
    }

    /// The JSON behind the status page (`/status.json`): per worker its cumulative counters
    /// and latency histogram, and when its latest report arrived; times in milliseconds since
    /// `origin` (`reported_ms` is 0 before a worker's first report).
    ///
    /// Cumulative, so that the server keeps no state per reader: any number of pages each
    /// difference two of their own polls, however far apart, into rates and into the
    /// percentiles of the latencies in between (bucket by bucket). A worker's counters move
    /// only when its report arrives, about once a second and not in step with a reader's
    /// polls, so a reader divides by the time between two reports (`reported_ms`), not
    /// between its polls. Bucket `i` of `latency_buckets` counts the samples of at most
    /// `latency_bounds_us[i]` µs (and above the previous bound); the last counts the rest.
    pub fn render_json(&self, origin: Instant, now: Instant) -> String {
        let millis = |at: Instant| at.saturating_duration_since(origin).as_millis();
        let mut out = String::with_capacity(256 + 320 * self.workers.len());
        out.push_str("{\"version\":");
        json_string(&mut out, env!("CARGO_PKG_VERSION"));
        let _ = write!(
            out,
            ",\"uptime_ms\":{},\n\"latency_bounds_us\":",
            millis(now)
        );
        json_array(&mut out, (0..FINITE_BUCKETS).map(Latency::bound));
        out.push_str(",\n\"workers\":[");
        for (w, (c, reported)) in self.workers.iter().zip(&self.reported).enumerate() {
            let comma = if w == 0 { "" } else { "," };
            let reported = reported.map_or(0, millis);
            let _ = write!(
                out,
                "{comma}\n{{\"worker\":{w},\"reported_ms\":{reported},\
                 \"connections_active\":{},\"connections_accepted\":{},\"requests\":{},\
                 \"bytes_sent\":{},\"ws_open\":{},\"latency_sum_us\":{},\"latency_buckets\":",
                c.active(),
                c.accepted,
                c.total_requests(),
                c.bytes_sent,
                c.ws.open(),
                c.latency.sum,
            );
            json_array(&mut out, c.latency.counts.iter().copied());
            out.push('}');
        }
        out.push_str("\n]}\n");
        out
    }
}

/// `text` as a JSON string: quotes, backslashes and control characters escaped, nothing else.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Integers as a JSON array.
fn json_array(out: &mut String, values: impl Iterator<Item = u64>) {
    out.push('[');
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{value}");
    }
    out.push(']');
}

/// The standard `process_*` families (as Prometheus client libraries name them); a figure
/// /proc did not give is left out.
pub fn render_process(out: &mut String, stats: &crate::procstat::ProcessStats) {
    let figures: [(&str, &str, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            stats.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            stats.resident_bytes.map(|b| b as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            stats.virtual_bytes.map(|b| b as f64),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            stats.open_fds.map(|n| n as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            stats.max_fds.map(|n| n as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            stats.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in figures {
        if let Some(value) = value {
            family(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Microseconds as decimal seconds without trailing zeros: 1 -> "0.000001", 2_000_000 -> "2".
fn seconds(micros: u64) -> String {
    let text = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Logs connection growth: one line each time the number of open connections first reaches a
/// new multiple of `step` above the highest multiple logged so far.
#[derive(Clone, Debug)]
pub struct ProgressLog {
    step: u64,
    logged: u64,
    since: Instant,
}

impl ProgressLog {
    /// A log that starts counting at zero connections at `now`; a `step` of 0 counts as 1.
    pub fn new(step: u64, now: Instant) -> Self {
        ProgressLog {
            step: step.max(1),
            logged: 0,
            since: now,
        }
    }

    /// Returns e.g. `connections: 12000 (+1000 in 35 ms)` when `active` reaches a new
    /// milestone; a jump over several milestones gives one line with the largest.
    pub fn observe(&mut self, active: u64, now: Instant) -> Option<String> {
        let milestone = active - active % self.step;
        if milestone <= self.logged {
            return None;
        }
        let millis = now.saturating_duration_since(self.since).as_millis();
        let line = format!(
            "connections: {milestone} (+{} in {millis} ms)",
            milestone - self.logged
        );
        self.logged = milestone;
        self.since = now;
        Some(line)
    }
}

/// A one-line traffic summary every `every`, quiet while nothing happens.
#[derive(Clone, Debug)]
pub struct Summary {
    every: Duration,
    since: Instant,
    last: Counters,
}

impl Summary {
    /// A summary whose first window starts at `now` with nothing counted yet.
    pub fn new(every: Duration, now: Instant) -> Self {
        Summary {
            every,
            since: now,
            last: Counters::default(),
        }
    }

    /// Given the cumulative `sum` of all workers, returns the summary of the window that
    /// ends at `now` once `every` has passed, unless nothing was counted in it, e.g.
    /// `last 10s: 123456 requests (12346/s), 2xx 100.0%, latency p50 0.128 ms p99 1.0 ms, 3.4 MB/s out, 50 open`.
    pub fn tick(&mut self, sum: &Counters, active: u64, now: Instant) -> Option<String> {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < self.every {
            return None;
        }
        let delta = sum.since(&self.last);
        self.last = sum.clone();
        self.since = now;
        if delta.is_zero() {
            return None;
        }
        Some(summary_line(&delta, active, elapsed))
    }
}

fn summary_line(delta: &Counters, active: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let requests = delta.total_requests();
    let mut line = format!(
        "last {:.0}s: {requests} requests ({:.0}/s)",
        elapsed.as_secs_f64(),
        requests as f64 / secs
    );
    if requests > 0 {
        let ok = delta.requests_in_class(2) as f64 * 100.0 / requests as f64;
        let p50 = millis(delta.latency.quantile(0.5));
        let p99 = millis(delta.latency.quantile(0.99));
        let _ = write!(line, ", 2xx {ok:.1}%, latency p50 {p50} p99 {p99}");
    }
    let mb_per_sec = delta.bytes_sent as f64 / 1e6 / secs;
    let _ = write!(line, ", {mb_per_sec:.1} MB/s out, {active} open");
    line
}

/// A latency bucket bound for people: "0.128 ms", "4.1 ms", "> 67 s" for +Inf.
fn millis(micros: u64) -> String {
    match micros {
        u64::MAX => "> 67 s".to_owned(),
        0..=999 => format!("{:.3} ms", micros as f64 / 1000.0),
        _ => format!("{:.1} ms", micros as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(samples: &[u64]) -> Latency {
        let mut h = Latency::default();
        for &s in samples {
            h.record(s);
        }
        h
    }

    /// Checks that `micros` lands in bucket `expected` and nowhere else.
    fn check_bucket(micros: u64, expected: usize) {
        let h = histogram(&[micros]);
        let mut counts = [0; LATENCY_BUCKETS];
        counts[expected] = 1;
        assert_eq!(h.counts, counts, "{micros} µs");
        assert_eq!(h.sum, micros);
    }

    #[test]
    fn bucket_boundaries() {
        check_bucket(0, 0);
        check_bucket(1, 0);
        check_bucket(2, 1);
        check_bucket(3, 2);
        check_bucket(4, 2);
        check_bucket(5, 3);
        check_bucket(1024, 10);
        check_bucket(1025, 11);
        check_bucket(1 << 26, 26);
        check_bucket((1 << 26) + 1, 27);
        check_bucket(u64::MAX, 27);
    }

    /// wsload's layout: 64 buckets per power of two.
    type Fine = Histogram<6, { 59 * 64 }>;

    fn check_fine_bucket(v: u64) {
        let bucket = Fine::bucket_of(v);
        let bound = Fine::bound(bucket);
        assert!(bound >= v, "{v}: bound {bound}");
        assert!(bound - v <= v / 64, "{v}: bound {bound} too far");
        if bucket > 0 {
            assert!(Fine::bound(bucket - 1) < v, "{v}: previous bucket holds it");
        }
    }

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        for v in (1..5000).chain([1 << 20, (1 << 20) + 12345, 999_999_999, u64::MAX >> 1]) {
            check_fine_bucket(v);
        }
        assert_eq!(
            (Fine::bucket_of(0), Fine::bucket_of(u64::MAX)),
            (0, 59 * 64 - 1)
        );
        let mut h = Fine::default();
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let p50 = h.quantile(0.5);
        assert!((500_000..=508_000).contains(&p50), "{p50}");
        let p100 = h.quantile(1.0);
        assert!((1_000_000..=1_016_000).contains(&p100), "{p100}");
    }

    #[test]
    fn sum_saturates() {
        assert_eq!(histogram(&[u64::MAX, 5]).sum, u64::MAX);
    }

    fn check_quantile(samples: &[u64], q: f64, expected: u64) {
        assert_eq!(
            histogram(samples).quantile(q),
            expected,
            "{samples:?} q={q}"
        );
    }

    #[test]
    fn quantiles() {
        check_quantile(&[], 0.5, 0);
        check_quantile(&[3], 0.0, 4);
        check_quantile(&[3], 1.0, 4);
        check_quantile(&[1, 2, 100, 1000], 0.5, 2);
        check_quantile(&[1, 2, 100, 1000], 0.51, 128);
        check_quantile(&[1, 2, 100, 1000], 0.99, 1024);
        check_quantile(&[1, 2, 100, 1000], 2.0, 1024);
        check_quantile(&[1, 2, 100, 1000], -1.0, 1);
        check_quantile(&[1, 2, 100, 1000], f64::NAN, 1);
        check_quantile(&[7; 99], 0.99, 8);
        check_quantile(&[1, u64::MAX], 1.0, u64::MAX);
    }

    #[test]
    fn merge_adds_counts_and_sums() {
        let mut a = histogram(&[1, 2, 3]);
        a.merge(&histogram(&[3, 1 << 30]));
        assert_eq!(a, histogram(&[1, 2, 3, 3, 1 << 30]));
        assert_eq!(a.count(), 5);
    }

    /// Responses per class 1xx..5xx (codes percore never sends count in none of them).
    fn classes(c: &Counters) -> [u64; 5] {
        [1, 2, 3, 4, 5].map(|class| c.requests_in_class(class))
    }

    #[test]
    fn statuses_and_classes() {
        let mut c = Counters::default();
        for status in [101, 200, 200, 204, 206, 304, 404, 500, 503, 0, 99, 499, 600] {
            c.record_status(Status::from_code(status));
        }
        assert_eq!(classes(&c), [1, 4, 1, 1, 2]);
        assert_eq!(c.requests[Status::OK.sent_index()], 2);
        // 0, 99, 499 and 600 are never sent; they share the last slot.
        assert_eq!(c.requests[STATUS_SLOTS - 1], 4);
        assert_eq!(c.total_requests(), 13);
    }

    fn report(worker: usize, accepted: u64, closed: u64, statuses: &[u16]) -> WorkerReport {
        let mut delta = Counters {
            accepted,
            closed,
            bytes_sent: 100 * statuses.len() as u64,
            ..Counters::default()
        };
        for &s in statuses {
            delta.record_status(Status::from_code(s));
            delta.latency.record(u64::from(s));
        }
        WorkerReport { worker, delta }
    }

    #[test]
    fn totals_aggregate_reports() {
        let mut totals = Totals::new(2);
        totals.apply(&report(0, 3, 1, &[200, 200]), Instant::now());
        totals.apply(&report(1, 2, 2, &[404]), Instant::now());
        totals.apply(&report(0, 1, 0, &[500]), Instant::now());
        totals.apply(&report(2, 1000, 0, &[200]), Instant::now());
        let w0 = totals.worker(0).cloned().unwrap_or_default();
        assert_eq!(
            (w0.accepted, w0.closed, classes(&w0)),
            (4, 1, [0, 2, 0, 0, 1])
        );
        assert_eq!(w0.latency, histogram(&[200, 200, 500]));
        assert!(totals.worker(2).is_none());
        let sum = totals.sum();
        assert_eq!((sum.accepted, sum.closed, sum.bytes_sent), (6, 3, 400));
        assert_eq!(classes(&sum), [0, 2, 0, 1, 1]);
        assert_eq!(sum.latency.count(), 4);
        assert_eq!(totals.active(), 3);
        assert!(!sum.is_zero());
        assert!(Totals::new(3).sum().is_zero());
    }

    #[test]
    fn pauses_and_unavailable_files_add_up_and_difference() {
        let one = Counters {
            accept_cap_pauses: 3,
            accept_cap_resumes: 2,
            files_unavailable: 5,
            ..Counters::default()
        };
        let mut sum = one.clone();
        sum.add(&one);
        assert_eq!(
            (
                sum.accept_cap_pauses,
                sum.accept_cap_resumes,
                sum.files_unavailable
            ),
            (6, 4, 10)
        );
        assert_eq!(sum.since(&one), one);
        assert!(!one.is_zero());
        assert_eq!(one.accept_paused(), 1);
        let mut totals = Totals::new(1);
        totals.apply(
            &WorkerReport {
                worker: 0,
                delta: one,
            },
            Instant::now(),
        );
        let text = totals.render_prometheus();
        assert!(
            text.contains("percore_accept_paused{worker=\"0\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn active_saturates_per_worker() {
        let mut totals = Totals::new(2);
        totals.apply(&report(0, 1, 5, &[]), Instant::now());
        totals.apply(&report(1, 2, 0, &[]), Instant::now());
        assert_eq!(totals.active(), 2);
    }

    #[test]
    fn seconds_formatting() {
        for (micros, text) in [
            (0, "0"),
            (1, "0.000001"),
            (1024, "0.001024"),
            (1_500_000, "1.5"),
            (2_000_000, "2"),
            (1 << 26, "67.108864"),
        ] {
            assert_eq!(seconds(micros), text);
        }
    }

    #[test]
    fn prometheus_exact() {
        let mut totals = Totals::new(1);
        let mut delta = Counters {
            accepted: 3,
            closed: 1,
            bytes_sent: 1234,
            accept_cap_pauses: 4,
            accept_cap_resumes: 3,
            files_unavailable: 7,
            ..Counters::default()
        };
        delta.record_status(Status::OK);
        delta.record_status(Status::NOT_FOUND);
        delta.latency.record(1);
        delta.latency.record(3);
        delta.ws.upgrades = 2;
        delta.ws.closed = 1;
        delta.ws.messages_in = 5;
        delta.ws.messages_out = 4;
        delta.ws.bytes_in = 50;
        delta.ws.bytes_out = 40;
        delta.ws.close_sent[WsCounters::close_slot(1000)] = 1;
        delta.ws.close_received[WsCounters::close_slot(4000)] = 1;
        delta.ws.close_received[WsCounters::close_slot(1005)] = 1;
        delta.tls.finished(true, false);
        delta.tls.finished(true, true);
        delta.tls.finished(true, true);
        delta.tls.failed(TlsFailure::PlainHttp);
        delta.tls.kernel(KernelTlsResult::Offloaded);
        totals.apply(&WorkerReport { worker: 0, delta }, Instant::now());
        let mut expected = format!(
            "# HELP percore_build_info Always 1; the labels say which percore this is.\n\
             # TYPE percore_build_info gauge\n\
             percore_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
        expected.push_str(
            "# HELP percore_workers Worker threads.\n\
             # TYPE percore_workers gauge\n\
             percore_workers 1\n\
             # HELP percore_connections_accepted_total Connections accepted.\n\
             # TYPE percore_connections_accepted_total counter\n\
             percore_connections_accepted_total{worker=\"0\"} 3\n\
             # HELP percore_connections_closed_total Connections closed.\n\
             # TYPE percore_connections_closed_total counter\n\
             percore_connections_closed_total{worker=\"0\"} 1\n\
             # HELP percore_connections_active Connections open now.\n\
             # TYPE percore_connections_active gauge\n\
             percore_connections_active{worker=\"0\"} 2\n\
             # HELP percore_accept_cap_pauses_total Times a worker reached --max-connections and stopped accepting.\n\
             # TYPE percore_accept_cap_pauses_total counter\n\
             percore_accept_cap_pauses_total{worker=\"0\"} 4\n\
             # HELP percore_accept_paused 1 while a worker holds --max-connections and new connections wait in the listen queue.\n\
             # TYPE percore_accept_paused gauge\n\
             percore_accept_paused{worker=\"0\"} 1\n\
             # HELP percore_requests_total Responses sent, by status code (and class).\n\
             # TYPE percore_requests_total counter\n\
             percore_requests_total{worker=\"0\",code=\"200\",class=\"2xx\"} 1\n\
             percore_requests_total{worker=\"0\",code=\"404\",class=\"4xx\"} 1\n\
             # HELP percore_response_bytes_total Bytes sent to clients.\n\
             # TYPE percore_response_bytes_total counter\n\
             percore_response_bytes_total{worker=\"0\"} 1234\n\
             # HELP percore_files_unavailable_total Requests answered 503 because a file could not be opened for lack of descriptors or memory.\n\
             # TYPE percore_files_unavailable_total counter\n\
             percore_files_unavailable_total{worker=\"0\"} 7\n\
             # HELP percore_request_duration_seconds Request latency as measured by the worker.\n\
             # TYPE percore_request_duration_seconds histogram\n\
             percore_request_duration_seconds_bucket{worker=\"0\",le=\"0.000001\"} 1\n\
             percore_request_duration_seconds_bucket{worker=\"0\",le=\"0.000002\"} 1\n",
        );
        let bounds = (2..27).map(|i| seconds(1 << i)).chain(["+Inf".to_owned()]);
        for le in bounds {
            let line =
                format!("percore_request_duration_seconds_bucket{{worker=\"0\",le=\"{le}\"}} 2\n");
            expected.push_str(&line);
        }
        expected.push_str(
            "percore_request_duration_seconds_sum{worker=\"0\"} 0.000004\n\
             percore_request_duration_seconds_count{worker=\"0\"} 2\n\
             # HELP percore_ws_upgrades_total WebSocket upgrades accepted.\n\
             # TYPE percore_ws_upgrades_total counter\n\
             percore_ws_upgrades_total{worker=\"0\"} 2\n\
             # HELP percore_ws_connections_active WebSocket connections open now.\n\
             # TYPE percore_ws_connections_active gauge\n\
             percore_ws_connections_active{worker=\"0\"} 1\n\
             # HELP percore_ws_messages_received_total WebSocket messages received.\n\
             # TYPE percore_ws_messages_received_total counter\n\
             percore_ws_messages_received_total{worker=\"0\"} 5\n\
             # HELP percore_ws_messages_sent_total WebSocket messages sent.\n\
             # TYPE percore_ws_messages_sent_total counter\n\
             percore_ws_messages_sent_total{worker=\"0\"} 4\n\
             # HELP percore_ws_received_bytes_total WebSocket message payload bytes received.\n\
             # TYPE percore_ws_received_bytes_total counter\n\
             percore_ws_received_bytes_total{worker=\"0\"} 50\n\
             # HELP percore_ws_sent_bytes_total WebSocket message payload bytes sent.\n\
             # TYPE percore_ws_sent_bytes_total counter\n\
             percore_ws_sent_bytes_total{worker=\"0\"} 40\n\
             # HELP percore_ws_closed_total WebSocket connections closed.\n\
             # TYPE percore_ws_closed_total counter\n\
             percore_ws_closed_total{worker=\"0\"} 1\n\
             # HELP percore_ws_close_frames_total WebSocket close frames by direction and status code.\n\
             # TYPE percore_ws_close_frames_total counter\n\
             percore_ws_close_frames_total{worker=\"0\",direction=\"sent\",code=\"1000\"} 1\n\
             percore_ws_close_frames_total{worker=\"0\",direction=\"received\",code=\"none\"} 1\n\
             percore_ws_close_frames_total{worker=\"0\",direction=\"received\",code=\"other\"} 1\n\
             # HELP percore_tls_handshakes_total TLS handshakes finished, by protocol version and kind (full or resumed).\n\
             # TYPE percore_tls_handshakes_total counter\n\
             percore_tls_handshakes_total{worker=\"0\",version=\"1.2\",kind=\"full\"} 0\n\
             percore_tls_handshakes_total{worker=\"0\",version=\"1.2\",kind=\"resumed\"} 0\n\
             percore_tls_handshakes_total{worker=\"0\",version=\"1.3\",kind=\"full\"} 1\n\
             percore_tls_handshakes_total{worker=\"0\",version=\"1.3\",kind=\"resumed\"} 2\n\
             # HELP percore_tls_handshake_failures_total TLS handshakes that did not finish, by reason.\n\
             # TYPE percore_tls_handshake_failures_total counter\n\
             percore_tls_handshake_failures_total{worker=\"0\",reason=\"malformed\"} 0\n\
             percore_tls_handshake_failures_total{worker=\"0\",reason=\"incompatible\"} 0\n\
             percore_tls_handshake_failures_total{worker=\"0\",reason=\"alert\"} 0\n\
             percore_tls_handshake_failures_total{worker=\"0\",reason=\"plain_http\"} 1\n\
             percore_tls_handshake_failures_total{worker=\"0\",reason=\"timeout\"} 0\n\
             percore_tls_handshake_failures_total{worker=\"0\",reason=\"closed\"} 0\n\
             percore_tls_handshake_failures_total{worker=\"0\",reason=\"other\"} 0\n\
             # HELP percore_tls_kernel_offloads_total Finished TLS 1.3 sessions offered to the kernel (--ktls), by result.\n\
             # TYPE percore_tls_kernel_offloads_total counter\n\
             percore_tls_kernel_offloads_total{worker=\"0\",result=\"offloaded\"} 1\n\
             percore_tls_kernel_offloads_total{worker=\"0\",result=\"declined\"} 0\n\
             percore_tls_kernel_offloads_total{worker=\"0\",result=\"failed\"} 0\n",
        );
        assert_eq!(totals.render_prometheus(), expected);
        assert!(expected.contains("le=\"0.000004\"} 2\n"));
        assert!(expected.contains("le=\"67.108864\"} 2\n"));
    }

    #[test]
    fn status_json_exact() {
        let origin = Instant::now();
        let at = |ms| origin + Duration::from_millis(ms);
        let mut totals = Totals::new(2);
        let mut delta = Counters {
            accepted: 3,
            closed: 1,
            bytes_sent: 1234,
            ..Counters::default()
        };
        delta.record_status(Status::OK);
        delta.record_status(Status::NOT_FOUND);
        delta.record_status(Status::SWITCHING_PROTOCOLS);
        delta.latency.record(1);
        delta.latency.record(3);
        delta.latency.record(1 << 30);
        delta.ws.upgrades = 1;
        totals.apply(&WorkerReport { worker: 1, delta }, at(1500));
        let mut buckets = vec!["0"; LATENCY_BUCKETS];
        buckets[0] = "1";
        buckets[2] = "1";
        buckets[LATENCY_BUCKETS - 1] = "1";
        let bounds: Vec<String> = (0..27).map(|i| (1u64 << i).to_string()).collect();
        let expected = format!(
            "{{\"version\":\"{}\",\"uptime_ms\":2750,\n\
             \"latency_bounds_us\":[{}],\n\
             \"workers\":[\n\
             {{\"worker\":0,\"reported_ms\":0,\"connections_active\":0,\"connections_accepted\":0,\
             \"requests\":0,\"bytes_sent\":0,\"ws_open\":0,\"latency_sum_us\":0,\
             \"latency_buckets\":[{}]}},\n\
             {{\"worker\":1,\"reported_ms\":1500,\"connections_active\":2,\"connections_accepted\":3,\
             \"requests\":3,\"bytes_sent\":1234,\"ws_open\":1,\"latency_sum_us\":1073741828,\
             \"latency_buckets\":[{}]}}\n\
             ]}}\n",
            env!("CARGO_PKG_VERSION"),
            bounds.join(","),
            ["0"; LATENCY_BUCKETS].join(","),
            buckets.join(","),
        );
        assert_eq!(totals.render_json(origin, at(2750)), expected);
        assert!(
            expected.contains("67108864],\n"),
            "the last finite bound is 2^26 µs"
        );
    }

    #[test]
    fn status_json_parses_as_json() {
        let origin = Instant::now();
        let mut totals = Totals::new(3);
        totals.apply(&report(2, 5, 1, &[200, 404, 500]), origin);
        let text = totals.render_json(origin, origin + Duration::from_secs(90));
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(json["uptime_ms"], 90_000);
        let bounds = json["latency_bounds_us"].as_array().map_or(0, Vec::len);
        assert_eq!(bounds, LATENCY_BUCKETS - 1);
        let workers = json["workers"].as_array().cloned().unwrap_or_default();
        assert_eq!(workers.len(), 3);
        for (i, worker) in workers.iter().enumerate() {
            assert_eq!(worker["worker"], i);
            let buckets = worker["latency_buckets"].as_array().map_or(0, Vec::len);
            assert_eq!(buckets, LATENCY_BUCKETS);
        }
        let w2 = &workers[2];
        assert_eq!(w2["connections_active"], 4);
        assert_eq!(w2["requests"], 3);
        assert_eq!(w2["latency_sum_us"], 200 + 404 + 500);
        // 200 µs falls in the bucket up to 256 µs, 404 and 500 µs in the one up to 512 µs.
        assert_eq!(w2["latency_buckets"][8], 1);
        assert_eq!(w2["latency_buckets"][9], 2);
        assert_eq!(workers[0]["reported_ms"], 0, "no report from worker 0");
    }

    #[test]
    fn json_strings_escape_what_json_needs_and_nothing_else() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\n\u{1}\u{1f}é✓/<");
        assert_eq!(out, r#""a\"b\\c\u000a\u0001\u001fé✓/<""#);
        let parsed: Result<String, _> = serde_json::from_str(&out);
        assert_eq!(parsed.ok().as_deref(), Some("a\"b\\c\n\u{1}\u{1f}é✓/<"));
    }

    #[test]
    fn process_families_leave_out_what_is_unknown() {
        let mut out = String::new();
        let stats = crate::procstat::ProcessStats {
            cpu_seconds: Some(1.25),
            open_fds: Some(7),
            ..Default::default()
        };
        render_process(&mut out, &stats);
        assert_eq!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total 1.25\n\
             # HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\n\
             process_open_fds 7\n"
        );
    }

    #[test]
    fn prometheus_buckets_are_cumulative_per_worker() {
        let mut totals = Totals::new(2);
        totals.apply(&report(1, 0, 0, &[200, 200, 404, 500]), Instant::now());
        let text = totals.render_prometheus();
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("percore_request_duration_seconds_bucket{worker=\"1\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        // 200 µs falls in bucket 8 (up to 256 µs), 404 and 500 µs in bucket 9 (up to 512 µs).
        let mut expected = vec![0; 8];
        expected.push(2);
        expected.extend([4; 19]);
        assert_eq!(counts, expected);
        assert!(text.contains("percore_request_duration_seconds_count{worker=\"0\"} 0\n"));
        assert!(text.contains("percore_request_duration_seconds_sum{worker=\"1\"} 0.001304\n"));
        assert!(text.contains("percore_workers 2\n"));
    }

    /// Feeds `(active, millis since start)` pairs and checks the lines that come out.
    fn check_progress(steps: &[(u64, u64)], expected: &[Option<&str>]) {
        let start = Instant::now();
        let mut log = ProgressLog::new(1000, start);
        let got: Vec<Option<String>> = steps
            .iter()
            .map(|&(active, ms)| log.observe(active, start + Duration::from_millis(ms)))
            .collect();
        let expected: Vec<Option<String>> = expected.iter().map(|l| l.map(String::from)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn progress_milestones() {
        check_progress(
            &[
                (0, 0),
                (999, 5),
                (1000, 10),
                (1999, 20),
                (2000, 45),
                (2500, 50),
            ],
            &[
                None,
                None,
                Some("connections: 1000 (+1000 in 10 ms)"),
                None,
                Some("connections: 2000 (+1000 in 35 ms)"),
                None,
            ],
        );
    }

    #[test]
    fn progress_jump_logs_once_with_largest() {
        check_progress(
            &[(3500, 100), (3999, 150), (4000, 160)],
            &[
                Some("connections: 3000 (+3000 in 100 ms)"),
                None,
                Some("connections: 4000 (+1000 in 60 ms)"),
            ],
        );
    }

    #[test]
    fn progress_dips_and_regrowth_do_not_relog() {
        check_progress(
            &[(2000, 10), (500, 20), (1000, 30), (2000, 40), (3000, 70)],
            &[
                Some("connections: 2000 (+2000 in 10 ms)"),
                None,
                None,
                None,
                Some("connections: 3000 (+1000 in 60 ms)"),
            ],
        );
    }

    #[test]
    fn progress_step_zero_does_not_divide_by_zero() {
        let now = Instant::now();
        let mut log = ProgressLog::new(0, now);
        assert_eq!(
            log.observe(2, now).as_deref(),
            Some("connections: 2 (+2 in 0 ms)")
        );
    }

    fn traffic(requests_2xx: u64, requests_5xx: u64, latency_micros: u64, bytes: u64) -> Counters {
        let mut c = Counters {
            accepted: 10,
            bytes_sent: bytes,
            ..Counters::default()
        };
        c.requests[Status::OK.sent_index()] = requests_2xx;
        c.requests[Status::INTERNAL_SERVER_ERROR.sent_index()] = requests_5xx;
        for _ in 0..requests_2xx + requests_5xx {
            c.latency.record(latency_micros);
        }
        c
    }

    #[test]
    fn summary_line_and_quiet_when_idle() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut summary = Summary::new(Duration::from_secs(10), start);
        let busy = traffic(990, 10, 100, 34_000_000);
        assert_eq!(summary.tick(&busy, 50, at(5)), None, "window not over yet");
        assert_eq!(
            summary.tick(&busy, 50, at(10)).as_deref(),
            Some("last 10s: 1000 requests (100/s), 2xx 99.0%, latency p50 0.128 ms p99 0.128 ms, 3.4 MB/s out, 50 open")
        );
        assert_eq!(summary.tick(&busy, 50, at(20)), None, "nothing changed");
        let mut more = busy.clone();
        more.add(&traffic(0, 0, 0, 0));
        assert_eq!(
            summary.tick(&more, 60, at(40)).as_deref(),
            Some("last 20s: 0 requests (0/s), 0.0 MB/s out, 60 open")
        );
        let mut slow = more.clone();
        slow.add(&traffic(1, 0, 5000, 0));
        slow.add(&traffic(1, 0, 1 << 30, 0));
        assert_eq!(
            summary.tick(&slow, 0, at(50)).as_deref(),
            Some("last 10s: 2 requests (0/s), 2xx 100.0%, latency p50 8.2 ms p99 > 67 s, 0.0 MB/s out, 0 open")
        );
    }

    #[test]
    fn summary_with_zero_period_does_not_divide_by_zero() {
        let now = Instant::now();
        let mut summary = Summary::new(Duration::ZERO, now);
        let line = summary.tick(&traffic(1, 0, 1, 1), 1, now);
        assert_eq!(
            line.as_deref(),
            Some("last 0s: 1 requests (1000/s), 2xx 100.0%, latency p50 0.001 ms p99 0.001 ms, 0.0 MB/s out, 1 open")
        );
    }
}
