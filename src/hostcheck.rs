//! `percore check`: what this host allows toward a target number of connections, for a given
//! configuration, and the setting that would lift each limit.
//!
//! Owns reading the host's limits (/proc and /proc/sys) into [`Facts`] and judging them
//! ([`assess`], pure, tested with made-up hosts). It never changes a setting: it says which one
//! to change. Memory per connection is the figure measured with `benches/idle_connections.py`
//! and `benches/scale.sh` (README): about 250 B of percore's memory and 5 KiB of the kernel's
//! per idle connection.

use std::fmt::Write as _;
use std::fs;

use crate::config::Config;

/// User-space memory per idle connection (measured: 227-237 B for HTTP, 353-363 B for a
/// WebSocket, at 15,000 connections).
const USER_BYTES_PER_CONNECTION: u64 = 400;
/// Kernel memory per idle server socket (measured: slab grows 8-10 KB per loopback pair, which
/// holds both ends).
const KERNEL_BYTES_PER_CONNECTION: u64 = 5 * 1024;
/// Descriptors a worker needs besides its connections: epoll, eventfd, listeners, cached files.
const DESCRIPTORS_PER_WORKER: u64 = 64;
/// Below this, a burst of new connections overflows a listener's accept queue.
const GOOD_SOMAXCONN: u64 = 4096;

/// What the host says about itself. `None` where it could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub nofile_soft: Option<u64>,
    pub nofile_hard: Option<u64>,
    pub nr_open: Option<u64>,
    pub file_max: Option<u64>,
    pub somaxconn: Option<u64>,
    pub local_port_range: Option<(u64, u64)>,
    /// tcp_mem's pressure and maximum, in pages.
    pub tcp_mem_pages: Option<(u64, u64)>,
    /// tcp_rmem's and tcp_wmem's default buffer sizes.
    pub tcp_rmem_default: Option<u64>,
    pub tcp_wmem_default: Option<u64>,
    pub mem_total: Option<u64>,
    pub page_size: u64,
    pub cpus: usize,
}

/// Reads the host's limits.
pub fn gather() -> Facts {
    let sysctl = |path: &str| fs::read_to_string(format!("/proc/sys/{path}")).ok();
    let numbers = |path: &str| sysctl(path).map(|text| numbers(&text));
    let limits = fs::read_to_string("/proc/self/limits").ok();
    let (nofile_soft, nofile_hard) = limits.as_deref().map_or((None, None), open_files_limits);
    Facts {
        nofile_soft,
        nofile_hard,
        nr_open: numbers("fs/nr_open").and_then(|n| n.first().copied()),
        file_max: numbers("fs/file-max").and_then(|n| n.first().copied()),
        somaxconn: numbers("net/core/somaxconn").and_then(|n| n.first().copied()),
        local_port_range: numbers("net/ipv4/ip_local_port_range").and_then(|n| pair(&n, 0, 1)),
        tcp_mem_pages: numbers("net/ipv4/tcp_mem").and_then(|n| pair(&n, 1, 2)),
        tcp_rmem_default: numbers("net/ipv4/tcp_rmem").and_then(|n| n.get(1).copied()),
        tcp_wmem_default: numbers("net/ipv4/tcp_wmem").and_then(|n| n.get(1).copied()),
        mem_total: fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| mem_total(&text)),
        page_size: crate::sys::page_size(),
        cpus: crate::sys::allowed_cpus().map(|c| c.len()).unwrap_or(0),
    }
}

/// How a finding bears on the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Worth knowing, not a cap on idle connections.
    Note,
    /// Caps the connections below the target.
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    pub what: String,
    /// The setting that would lift the limit (empty when nothing needs changing).
    pub lift: String,
}

/// Judges `facts` for `target` connections under `config`.
pub fn assess(facts: &Facts, config: &Config, target: u64) -> Vec<Finding> {
    let mut findings = Vec::new();
    let workers = config.workers as u64;
    let reserve = workers * DESCRIPTORS_PER_WORKER + 32;
    let need = target + reserve;
    let judge = |cap: u64| {
        if cap >= target {
            Verdict::Ok
        } else {
            Verdict::Fail
        }
    };

    // percore raises its soft limit to the hard one; an unlimited hard limit stops at nr_open.
    if let Some(hard) = facts.nofile_hard {
        let reachable = facts.nr_open.map_or(hard, |nr| hard.min(nr));
        let cap = reachable.saturating_sub(reserve);
        findings.push(Finding {
            verdict: judge(cap),
            what: format!(
                "open files: soft {}, hard {}, fs.nr_open {} -> caps at {} connections",
                show(facts.nofile_soft),
                hard,
                show(facts.nr_open),
                group(cap)
            ),
            lift: format!(
                "LimitNOFILE={need} in the systemd unit (or `ulimit -Hn {need}` as root), and \
                 sysctl fs.nr_open={}",
                need.max(facts.nr_open.unwrap_or(0))
            ),
        });
    }
    if let Some(file_max) = facts.file_max {
        let cap = file_max.saturating_sub(reserve);
        findings.push(Finding {
            verdict: judge(cap),
            what: format!(
                "fs.file-max {} (all processes) -> caps at {} connections",
                file_max,
                group(cap)
            ),
            lift: format!("sysctl fs.file-max={}", need * 2),
        });
    }
    if let Some(total) = facts.mem_total {
        let per = USER_BYTES_PER_CONNECTION + KERNEL_BYTES_PER_CONNECTION;
        let cap = total / per;
        findings.push(Finding {
            verdict: judge(cap),
            what: format!(
                "memory {} MiB at about {} B per idle connection ({} percore + {} kernel) -> caps at {} connections",
                total >> 20,
                per,
                USER_BYTES_PER_CONNECTION,
                KERNEL_BYTES_PER_CONNECTION,
                group(cap)
            ),
            lift: format!("{} MiB of memory", (target * per) >> 20),
        });
    }
    if let (Some((pressure, max)), Some(rmem)) = (facts.tcp_mem_pages, facts.tcp_rmem_default) {
        let max_bytes = max.saturating_mul(facts.page_size);
        let per_busy = rmem + facts.tcp_wmem_default.unwrap_or(rmem);
        findings.push(Finding {
            verdict: Verdict::Note,
            what: format!(
                "net.ipv4.tcp_mem pressure {} MiB, max {} MiB of socket buffers: about {} \
                 connections can have data queued at the default buffer sizes at once \
                 (idle ones hold none)",
                pressure.saturating_mul(facts.page_size) >> 20,
                max_bytes >> 20,
                group(max_bytes / per_busy.max(1))
            ),
            lift: "sysctl net.ipv4.tcp_mem=\"<pressure> <pressure> <max>\" (in pages)".to_owned(),
        });
    }
    if let Some(somaxconn) = facts.somaxconn {
        findings.push(Finding {
            verdict: if somaxconn >= GOOD_SOMAXCONN {
                Verdict::Ok
            } else {
                Verdict::Note
            },
            what: format!(
                "net.core.somaxconn {somaxconn}: at most that many new connections wait per \
                 listener ({} listeners per worker)",
                config.listen_addrs().len()
            ),
            lift: format!("sysctl net.core.somaxconn={GOOD_SOMAXCONN}"),
        });
    }
    if let Some((low, high)) = facts.local_port_range {
        let per_address = (high + 1).saturating_sub(low);
        let ports = config.listen_addrs().len() as u64;
        let per_client = per_address * ports;
        findings.push(Finding {
            verdict: Verdict::Note,
            what: format!(
                "net.ipv4.ip_local_port_range {low}-{high} (on client hosts): one client address \
                 reaches {} connections over the {ports} listening address:port pairs, so {} \
                 client addresses reach the target",
                group(per_client),
                target.div_ceil(per_client.max(1))
            ),
            lift: "sysctl net.ipv4.ip_local_port_range=\"1024 65535\" on the clients".to_owned(),
        });
    }
    findings.push(Finding {
        verdict: if facts.cpus == 0 || workers <= facts.cpus as u64 {
            Verdict::Ok
        } else {
            Verdict::Note
        },
        what: format!(
            "{} CPUs for {} workers (one pinned reactor each)",
            facts.cpus, workers
        ),
        lift: "--workers auto".to_owned(),
    });
    findings
}

/// The report, and whether every finding fits the target.
pub fn report(findings: &[Finding], target: u64) -> (String, bool) {
    let mut out = format!("percore check: toward {} connections\n", group(target));
    for finding in findings {
        let label = match finding.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Note => "note",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(out, "  {label}  {}", finding.what);
        if finding.verdict != Verdict::Ok {
            let _ = writeln!(out, "        lift: {}", finding.lift);
        }
    }
    let fits = findings.iter().all(|f| f.verdict != Verdict::Fail);
    let _ = writeln!(
        out,
        "{}",
        if fits {
            "this host fits the target"
        } else {
            "this host does not fit the target: see the FAIL lines"
        }
    );
    (out, fits)
}

fn show(value: Option<u64>) -> String {
    value.map_or("?".to_owned(), |v| v.to_string())
}

/// 1234567 -> "1,234,567".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn numbers(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn pair(numbers: &[u64], a: usize, b: usize) -> Option<(u64, u64)> {
    Some((*numbers.get(a)?, *numbers.get(b)?))
}

/// `Max open files  <soft>  <hard>  files` from /proc/PID/limits ("unlimited" is u64::MAX).
fn open_files_limits(text: &str) -> (Option<u64>, Option<u64>) {
    let Some(line) = text.lines().find(|l| l.starts_with("Max open files")) else {
        return (None, None);
    };
    let mut values = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|v| match v {
            "unlimited" => Some(u64::MAX),
            v => v.parse().ok(),
        });
    (values.next().flatten(), values.next().flatten())
}

/// MemTotal from /proc/meminfo, in bytes.
fn mem_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host ready for a million: the unit's LimitNOFILE, 32 GiB.
    fn big_host() -> Facts {
        Facts {
            nofile_soft: Some(1_048_576),
            nofile_hard: Some(1_048_576),
            nr_open: Some(1_048_576),
            file_max: Some(9_223_372_036_854_775_807),
            somaxconn: Some(4096),
            local_port_range: Some((32768, 60999)),
            tcp_mem_pages: Some((2_000_000, 3_000_000)),
            tcp_rmem_default: Some(131_072),
            tcp_wmem_default: Some(16_384),
            mem_total: Some(32 << 30),
            page_size: 4096,
            cpus: 16,
        }
    }

    fn config(workers: usize) -> Config {
        Config {
            workers,
            ..Config::defaults()
        }
    }

    #[test]
    fn a_prepared_host_fits_a_million() {
        let findings = assess(&big_host(), &config(16), 1_000_000);
        let (text, fits) = report(&findings, 1_000_000);
        assert!(fits, "{text}");
        assert!(text.contains("caps at 1,047,520 connections"), "{text}");
        // One client address reaches 28,232 x 30 = 846,960 connections: two are needed.
        assert!(text.contains("846,960 connections"), "{text}");
        assert!(text.contains("so 2 client addresses"), "{text}");
    }

    #[test]
    fn this_machine_fails_on_open_files_and_says_how_to_lift_it() {
        let host = Facts {
            nofile_soft: Some(1024),
            nofile_hard: Some(20_000),
            mem_total: Some(24 << 30),
            somaxconn: Some(128),
            cpus: 2,
            ..big_host()
        };
        let findings = assess(&host, &config(4), 1_000_000);
        let (text, fits) = report(&findings, 1_000_000);
        assert!(!fits, "{text}");
        assert!(
            text.contains("FAIL  open files: soft 1024, hard 20000, fs.nr_open 1048576 -> caps at 19,712 connections"),
            "{text}"
        );
        assert!(
            text.contains("lift: LimitNOFILE=1000288 in the systemd unit"),
            "{text}"
        );
        assert!(text.contains("note  net.core.somaxconn 128"), "{text}");
        assert!(text.contains("note  2 CPUs for 4 workers"), "{text}");
        // 24 GiB at 5,520 B each holds about 4.6 M idle connections.
        assert!(text.contains("ok    memory 24576 MiB"), "{text}");
    }

    #[test]
    fn too_little_memory_fails() {
        let host = Facts {
            mem_total: Some(2 << 30),
            ..big_host()
        };
        let findings = assess(&host, &config(16), 1_000_000);
        assert!(findings
            .iter()
            .any(|f| f.verdict == Verdict::Fail && f.what.starts_with("memory 2048 MiB")));
    }

    #[test]
    fn proc_texts() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 unlimited            files\n";
        assert_eq!(open_files_limits(limits), (Some(1024), Some(u64::MAX)));
        assert_eq!(
            mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000 * 1024)
        );
        assert_eq!(numbers("4096\t87380\t6291456\n"), [4096, 87380, 6_291_456]);
        assert_eq!(group(1_000_000), "1,000,000");
        assert_eq!(group(999), "999");
    }

    #[test]
    fn this_host_can_be_read() {
        let facts = gather();
        assert!(
            facts.nofile_hard.is_some() && facts.mem_total.is_some(),
            "{facts:?}"
        );
        assert!(facts.cpus > 0);
    }
}
