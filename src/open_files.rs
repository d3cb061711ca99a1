//! The open-file limit. Each connection is a file descriptor; systemd starts services with a
//! soft limit of 1024, and at that limit a few thousand slow clients (long-polls, event
//! streams) make new connections wait in the accept queue (`/healthz` p99 of 4–5 s, against
//! 12 ms above it). The hard limit is ours to take, so the service raises the soft one to it.

/// Raises the soft `RLIMIT_NOFILE` to the hard one; returns the limit now in force, and the
/// one before when it changed.
pub fn raise_to_hard_limit() -> std::io::Result<(libc::rlim_t, Option<libc::rlim_t>)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Ok((limit.rlim_cur, None));
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, Some(before)))
}
