//! Every value type: what it accepts, what it writes back, and the hostile values it refuses.

use super::*;

/// Values that would add a directive, close a block, comment the rest out, read a variable or
/// break the line, if any value type let them through.
const HOSTILE: &[&str] = &[
    "x; include /etc/shadow",
    "a}\nserver{",
    "a\nserver {",
    "$host",
    "\"",
    "'",
    "a b",
    "a\tb",
    "a#b",
    "a\\b",
    "a{",
    "a\r",
    "a\0b",
    "é",
    "",
];

#[test]
fn no_hostile_value_is_accepted_by_any_type() {
    for h in HOSTILE {
        for prefix in ["", "/", "/a/", "127.0.0.1:", "unix:/"] {
            let v = format!("{prefix}{h}");
            assert!(DnsName::server_name(&v).is_err(), "DnsName {v:?}");
            assert!(DnsName::host(&v).is_err(), "DnsName {v:?}");
            assert!(UpstreamAddr::parse(&v).is_err(), "UpstreamAddr {v:?}");
            assert!(Size::parse(&v).is_err(), "Size {v:?}");
            assert!(Duration::parse(&v).is_err(), "Duration {v:?}");
            if !h.is_empty() {
                assert!(UrlPath::parse(&v).is_err(), "UrlPath {v:?}");
            }
            assert!(HostPath::parse(&v).is_err(), "HostPath {v:?}");
            assert!(Cidr::parse(&v).is_err(), "Cidr {v:?}");
        }
    }
}

#[test]
fn a_refusal_shows_the_value_on_one_line_and_says_why() {
    let e = DnsName::server_name("a}\nserver{").unwrap_err();
    assert_eq!(
        e.message,
        "`a}\\nserver{`: not a DNS name: it holds a brace (it would open or close a block)"
    );
    assert!(!e.message.contains('\n'));
    let e = UrlPath::parse("/x; include /etc/shadow").unwrap_err();
    assert_eq!(
        e.message,
        "`/x; include /etc/shadow`: not a URL path: it holds a `;` (it would end the directive)"
    );
    assert!(e.fix.starts_with("write a path such as /api/"));
    let e = HostPath::parse("/etc/$host").unwrap_err();
    assert!(e.message.contains("Nginx would read a variable"), "{e:?}");
    let long = "a".repeat(300);
    assert!(DnsName::host(&long).unwrap_err().message.contains('…'));
}

#[test]
fn dns_names() {
    let ok = |s: &str| DnsName::server_name(s).map(|n| n.to_string());
    assert_eq!(ok("API.Example.FR").unwrap(), "api.example.fr");
    assert_eq!(ok("*.example.org").unwrap(), "*.example.org");
    assert!(ok("*.example.org").is_ok_and(|n| n.starts_with("*.")));
    assert!(DnsName::server_name("*.example.org").unwrap().is_wildcard());
    assert_eq!(
        ok("xn--bcher-kva.example").unwrap(),
        "xn--bcher-kva.example"
    );
    assert_eq!(ok("localhost").unwrap(), "localhost");
    let label = "a".repeat(63);
    assert!(ok(&format!("{label}.org")).is_ok());
    for bad in [
        "*.*.example.org",
        "a.*.example.org",
        "*example.org",
        "*",
        "example.org.",
        ".example.org",
        "a..b",
        "-a.org",
        "a-.org",
        "192.0.2.1",
        "1.2.3",
        "::1",
        "~^www\\.",
        "bücher.example",
        "a_b.org",
    ] {
        assert!(ok(bad).is_err(), "{bad}");
    }
    assert!(ok(&format!("{}.org", "a".repeat(64))).is_err());
    let long = vec!["abcdefghi"; 26].join(".");
    assert!(long.len() > 253);
    assert!(ok(&long).is_err());
    assert!(DnsName::host("*.example.org").is_err());
    assert!(DnsName::server_name("bücher.example")
        .unwrap_err()
        .fix
        .contains("punycode"));
}

#[test]
fn upstream_addresses() {
    let ok = |s: &str| UpstreamAddr::parse(s).map(|a| (a.to_string(), a.proxy_pass()));
    assert_eq!(
        ok("127.0.0.1:3000").unwrap(),
        ("127.0.0.1:3000".into(), "http://127.0.0.1:3000".into())
    );
    assert_eq!(
        ok("[::1]:3000").unwrap(),
        ("[::1]:3000".into(), "http://[::1]:3000".into())
    );
    assert_eq!(
        ok("Backend.Internal:8080").unwrap(),
        (
            "backend.internal:8080".into(),
            "http://backend.internal:8080".into()
        )
    );
    assert_eq!(
        ok("unix:/run/app/app.sock").unwrap(),
        (
            "unix:/run/app/app.sock".into(),
            "http://unix:/run/app/app.sock:".into()
        )
    );
    for bad in [
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "::1",
        "[::1]",
        "http://127.0.0.1:3000",
        "backend",
        "backend:",
        "backend:x",
        "*.example.org:80",
        "unix:relative.sock",
        "unix:/run/../etc/shadow",
        "1.2.3.4:80:90",
    ] {
        assert!(ok(bad).is_err(), "{bad}");
    }
}

#[test]
fn sizes_and_durations() {
    for (s, want) in [
        ("10m", "10m"),
        ("1G", "1g"),
        ("512k", "512k"),
        ("0", "0"),
        ("1048576", "1048576"),
    ] {
        assert_eq!(Size::parse(s).unwrap().as_str(), want);
    }
    for bad in [
        "m",
        "10mb",
        "10 m",
        "-1",
        "1.5m",
        "10t",
        "9999999999",
        "10mk",
    ] {
        assert!(Size::parse(bad).is_err(), "{bad}");
    }
    for s in ["30s", "5m", "1h", "60", "500ms", "1d"] {
        assert_eq!(Duration::parse(s).unwrap().as_str(), s);
    }
    for bad in ["0", "0s", "s", "5 m", "5M", "1w", "1.5s", "-1s", "1234567s"] {
        assert!(Duration::parse(bad).is_err(), "{bad}");
    }
    assert!(Duration::parse("0s").unwrap_err().message.contains("zero"));
}

#[test]
fn url_and_host_paths() {
    for s in ["/", "/api/", "/hooks/github", "/a-b_c.d~e+f,g=h:i@j"] {
        assert_eq!(UrlPath::parse(s).unwrap().as_str(), s);
    }
    for bad in [
        "api", "/a//b", "/a/../b", "/./", "/a?b", "/a%20b", "/a*", "/a&b",
    ] {
        assert!(UrlPath::parse(bad).is_err(), "{bad}");
    }
    for s in [
        "/etc/ssl/private/site.key",
        "/etc/letsencrypt/live/a.example/fullchain.pem",
    ] {
        assert_eq!(HostPath::parse(s).unwrap().as_str(), s);
    }
    for bad in [
        "/",
        "etc/x",
        "/etc//x",
        "/etc/./x",
        "/etc/../x",
        "/etc/x/",
        "/etc/x y",
        "/etc/x:y",
    ] {
        assert!(HostPath::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn cidrs() {
    for (s, want) in [
        ("192.0.2.10", "192.0.2.10"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("::1", "::1"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ] {
        assert_eq!(Cidr::parse(s).unwrap().to_string(), want);
    }
    for bad in [
        "all",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0",
        "a/8",
    ] {
        assert!(Cidr::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn what_a_published_host_ip_connects_to() {
    use std::net::IpAddr;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(connect_ip(""), (ip("127.0.0.1"), false));
    assert_eq!(connect_ip("0.0.0.0"), (ip("127.0.0.1"), false));
    assert_eq!(connect_ip("::"), (ip("::1"), false));
    assert_eq!(connect_ip("127.0.0.1"), (ip("127.0.0.1"), true));
    assert_eq!(connect_ip("127.0.0.2"), (ip("127.0.0.2"), true));
    assert_eq!(connect_ip("::1"), (ip("::1"), true));
    assert_eq!(connect_ip("10.0.0.5"), (ip("10.0.0.5"), false));
}
