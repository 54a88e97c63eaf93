//! Stop signals: the image's `StopSignal` string, and CRI's `Signal` enum (the request's
//! `stop_signal` since CRI 1.33, reported back in ContainerStatus).

use crust_proto::cri;

/// Parses an image StopSignal: `SIGTERM`, `TERM`, `SIGRTMIN+3` or a number.
pub fn parse(s: &str) -> Option<i32> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let plus = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')?.parse::<i32>().ok()?
        };
        let n = libc::SIGRTMIN() + plus;
        return (n <= libc::SIGRTMAX()).then_some(n);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let minus = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('-')?.parse::<i32>().ok()?
        };
        let n = libc::SIGRTMAX() - minus;
        return (n >= libc::SIGRTMIN()).then_some(n);
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// The signal number a CRI `Signal` names; None for SIGNAL_RUNTIME_DEFAULT (or a value this
/// build does not know).
pub fn from_cri(value: i32) -> Option<i32> {
    let signal = cri::Signal::try_from(value).ok()?;
    let name = signal.as_str_name().strip_prefix("SIGNAL_")?;
    if name == "RUNTIME_DEFAULT" {
        return None;
    }
    // SIGRTMINPLUS3 is SIGRTMIN+3, SIGRTMAXMINUS3 SIGRTMAX-3; SIGCLD, SIGPOLL and SIGIOT are Linux aliases nix does not
    // parse.
    match name {
        "SIGCLD" => Some(libc::SIGCHLD),
        "SIGPOLL" => Some(libc::SIGIO),
        "SIGIOT" => Some(libc::SIGABRT),
        _ => parse(&name.replace("PLUS", "+").replace("MINUS", "-")),
    }
}

/// The CRI `Signal` for a signal number (SIGNAL_RUNTIME_DEFAULT if CRI has no name for it).
pub fn to_cri(signal: i32) -> cri::Signal {
    let name = if signal >= libc::SIGRTMIN() && signal <= libc::SIGRTMAX() {
        // CRI names the lower half from SIGRTMIN up and the upper half from SIGRTMAX down.
        match (signal - libc::SIGRTMIN(), libc::SIGRTMAX() - signal) {
            (0, _) => "SIGRTMIN".to_string(),
            (_, 0) => "SIGRTMAX".to_string(),
            (n, _) if n <= 15 => format!("SIGRTMINPLUS{n}"),
            (_, n) => format!("SIGRTMAXMINUS{n}"),
        }
    } else {
        match nix::sys::signal::Signal::try_from(signal) {
            Ok(s) => s.as_str().to_string(),
            Err(_) => return cri::Signal::RuntimeDefault,
        }
    };
    cri::Signal::from_str_name(&format!("SIGNAL_{name}")).unwrap_or(cri::Signal::RuntimeDefault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_stop_signals_parse() {
        assert_eq!(parse("SIGQUIT"), Some(3));
        assert_eq!(parse("term"), Some(15));
        assert_eq!(parse("9"), Some(9));
        assert_eq!(parse("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(parse("SIGRTMAX-1"), Some(libc::SIGRTMAX() - 1));
        assert_eq!(parse(""), None);
        assert_eq!(parse("SIGNOPE"), None);
        assert_eq!(parse("99"), None);
    }

    #[test]
    fn cri_signals_map_both_ways() {
        assert_eq!(from_cri(cri::Signal::RuntimeDefault as i32), None);
        assert_eq!(from_cri(cri::Signal::Sigusr1 as i32), Some(libc::SIGUSR1));
        assert_eq!(from_cri(cri::Signal::Sigcld as i32), Some(libc::SIGCHLD));
        assert_eq!(
            from_cri(cri::Signal::Sigrtminplus2 as i32),
            Some(libc::SIGRTMIN() + 2)
        );
        assert_eq!(from_cri(9999), None);
        assert_eq!(to_cri(libc::SIGTERM), cri::Signal::Sigterm);
        assert_eq!(to_cri(libc::SIGRTMIN() + 2), cri::Signal::Sigrtminplus2);
        // Every named CRI signal comes back as itself (aliases as their Linux signal).
        for v in 1..=80 {
            let Ok(s) = cri::Signal::try_from(v) else {
                continue;
            };
            let n = from_cri(v).unwrap_or_else(|| panic!("{s:?} has no number"));
            let back = to_cri(n);
            assert_eq!(from_cri(back as i32), Some(n), "{s:?}");
        }
    }
}
