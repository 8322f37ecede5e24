//! Cross-origin reads of the served files (the Fetch standard's CORS protocol): which origins a
//! browser lets read a response, and the answer to a preflight `OPTIONS`.
//!
//! Owns the `Access-Control-*` and `Vary: Origin` field lines. It writes into a buffer the
//! caller owns and decides nothing else: the responder's status, body and other fields stand.

use super::Request;

/// What `--cors-origins` allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No CORS fields (browsers keep other origins from reading responses).
    #[default]
    Off,
    /// `Access-Control-Allow-Origin: *` on every response: any site may read the files.
    AnyOrigin,
    /// These origins (`https://app.example`, lowercase), each echoed back when it asks, with
    /// `Vary: Origin` on every response so a cache keeps them apart.
    Origins(Vec<String>),
}

/// Seconds a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: &[u8] = b"86400";

impl CorsPolicy {
    pub fn is_off(&self) -> bool {
        matches!(self, CorsPolicy::Off)
    }

    /// Appends the CORS field lines for the response to `req` to `out`.
    pub fn write_lines(&self, req: &Request<'_>, out: &mut Vec<u8>) {
        let allowed: &[u8] = match self {
            CorsPolicy::Off => return,
            CorsPolicy::AnyOrigin => b"*",
            CorsPolicy::Origins(origins) => {
                out.extend_from_slice(b"Vary: Origin\r\n");
                let Some(origin) = req.header("origin") else {
                    return;
                };
                if !origins
                    .iter()
                    .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
                {
                    return;
                }
                origin
            }
        };
        line(out, b"Access-Control-Allow-Origin", allowed);
        if is_preflight(req) {
            line(out, b"Access-Control-Allow-Methods", b"GET, HEAD, OPTIONS");
            if let Some(asked) = req.header("access-control-request-headers") {
                if is_field_name_list(asked) {
                    line(out, b"Access-Control-Allow-Headers", asked);
                }
            }
            line(out, b"Access-Control-Max-Age", PREFLIGHT_MAX_AGE);
        } else {
            // Range requests from scripts (media players, PDF viewers) need to read these.
            line(
                out,
                b"Access-Control-Expose-Headers",
                b"Accept-Ranges, Content-Range, ETag",
            );
        }
    }
}

/// An `OPTIONS` that asks whether a method may be used cross-origin.
fn is_preflight(req: &Request<'_>) -> bool {
    req.method_name == b"OPTIONS" && req.header("access-control-request-method").is_some()
}

/// Field names separated by commas (and spaces): safe to echo back as a field value.
fn is_field_name_list(value: &[u8]) -> bool {
    !value.is_empty()
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~, \t".contains(&b))
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits, Parse};

    fn lines(policy: &CorsPolicy, head: &str) -> String {
        let mut head = head.replace('\n', "\r\n").into_bytes();
        let Ok(Parse::Complete(req)) = parse_request(&mut head, &Limits::default()) else {
            panic!("the request does not parse");
        };
        let mut out = Vec::new();
        policy.write_lines(&req, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    const GET: &str = "GET /a.json HTTP/1.1\nHost: x\nOrigin: https://app.example\n\n";
    const PREFLIGHT: &str = "OPTIONS /a.json HTTP/1.1\nHost: x\nOrigin: https://app.example\n\
                             Access-Control-Request-Method: GET\n\
                             Access-Control-Request-Headers: range, x-trace\n\n";
    const EXPOSE: &str = "Access-Control-Expose-Headers: Accept-Ranges, Content-Range, ETag\r\n";

    fn listed() -> CorsPolicy {
        CorsPolicy::Origins(vec![
            "https://app.example".into(),
            "http://localhost:3000".into(),
        ])
    }

    #[test]
    fn off_adds_nothing() {
        assert_eq!(lines(&CorsPolicy::Off, GET), "");
        assert_eq!(lines(&CorsPolicy::Off, PREFLIGHT), "");
    }

    #[test]
    fn any_origin_is_a_star_with_or_without_origin() {
        let any = CorsPolicy::AnyOrigin;
        let star = format!("Access-Control-Allow-Origin: *\r\n{EXPOSE}");
        assert_eq!(lines(&any, GET), star);
        assert_eq!(lines(&any, "GET / HTTP/1.1\nHost: x\n\n"), star);
    }

    #[test]
    fn a_listed_origin_is_echoed_and_others_get_only_vary() {
        assert_eq!(
            lines(&listed(), GET),
            format!("Vary: Origin\r\nAccess-Control-Allow-Origin: https://app.example\r\n{EXPOSE}")
        );
        let other = GET.replace("https://app.example", "https://evil.example");
        assert_eq!(lines(&listed(), &other), "Vary: Origin\r\n");
        assert_eq!(
            lines(&listed(), "GET / HTTP/1.1\nHost: x\n\n"),
            "Vary: Origin\r\n"
        );
    }

    #[test]
    fn a_preflight_gets_methods_headers_and_max_age() {
        assert_eq!(
            lines(&listed(), PREFLIGHT),
            "Vary: Origin\r\nAccess-Control-Allow-Origin: https://app.example\r\n\
             Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
             Access-Control-Allow-Headers: range, x-trace\r\n\
             Access-Control-Max-Age: 86400\r\n"
        );
        // Asked-for headers that are not a name list are not echoed.
        let odd = PREFLIGHT.replace("range, x-trace", "a:b");
        assert!(!lines(&listed(), &odd).contains("Allow-Headers"));
        // A plain OPTIONS is not a preflight.
        let plain = "OPTIONS /a HTTP/1.1\nHost: x\nOrigin: https://app.example\n\n";
        assert!(lines(&listed(), plain).contains(EXPOSE));
    }
}
