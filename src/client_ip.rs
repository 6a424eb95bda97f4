//! What a request says about its client: its address (the peer's, or, when the peer is a
//! configured trusted proxy, the nearest address in `X-Forwarded-For` that is not one of those
//! proxies; a header sent by anyone else is ignored, so it cannot be forged past an allow-list
//! or a lockout), and the base URL it reached this server at.
use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// An IP address (as a one-address block) or a CIDR block.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Parses a list of addresses and blocks; the first that does not parse is the error.
pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<IpNet>, String> {
    items
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_net(s).ok_or_else(|| s.to_owned()))
        .collect()
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address for `req`, given the trusted proxies.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(req.peer_addr()?.ip());
    Some(resolve(
        peer,
        req.headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok()),
        trusted,
    ))
}

/// From the peer back along the `X-Forwarded-For` hops, right to left, while each hop is a
/// trusted proxy; a hop that does not parse ends the walk at the last trusted one.
fn resolve<'a>(peer: IpAddr, headers: impl Iterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    if !contains(trusted, peer) {
        return peer;
    }
    let hops: Vec<&str> = headers.flat_map(|h| h.split(',')).collect();
    let mut current = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            return current;
        };
        current = canonical(ip);
        if !contains(trusted, current) {
            return current;
        }
    }
    current
}

/// The address clients reach this server at: `public_url` (`auth.public_url`), else what the
/// request says it asked for (links built from it work for the caller that gets them).
///
/// Without `public_url`, `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` count only when
/// the peer is one of the `trusted` proxies: from anyone else they would let a caller choose the
/// host of the links this server signs and hands out.
pub fn request_base(req: &HttpRequest, public_url: Option<&str>, trusted: &[IpNet]) -> String {
    if let Some(url) = public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let from_proxy = req
        .peer_addr()
        .is_some_and(|peer| contains(trusted, peer.ip()));
    if from_proxy {
        let info = req.connection_info();
        return format!("{}://{}", info.scheme(), info.host());
    }
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(ToString::to_string))
        .unwrap_or_else(|| req.app_config().host().to_owned());
    format!("http://{host}")
}

/// Whether `ip` is in one of `allowed`.
pub fn allowed(ip: IpAddr, allowed: &[IpNet]) -> bool {
    contains(allowed, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let trusted = parse_list(["10.0.0.0/8", "127.0.0.1"]).expect("parses");
        let forged = ["52.89.214.238"];
        // From anyone else: the peer, whatever the header says.
        assert_eq!(
            resolve(ip("203.0.113.9"), forged.into_iter(), &trusted),
            ip("203.0.113.9")
        );
        // Through our proxy: the address it saw.
        assert_eq!(
            resolve(ip("10.1.2.3"), forged.into_iter(), &trusted),
            ip("52.89.214.238")
        );
        // A client that prepends a forged hop through our proxy gets its own address, not the
        // forged one: the walk stops at the first untrusted hop from the right.
        let chain = ["52.89.214.238, 198.51.100.7", "10.9.9.9"];
        assert_eq!(
            resolve(ip("127.0.0.1"), chain.into_iter(), &trusted),
            ip("198.51.100.7")
        );
        // Garbage in the header ends the walk at the proxy.
        assert_eq!(
            resolve(ip("10.1.2.3"), ["nonsense"].into_iter(), &trusted),
            ip("10.1.2.3")
        );
        // IPv4-mapped IPv6 peers are their IPv4 address.
        assert_eq!(
            resolve(ip("::ffff:10.1.2.3"), forged.into_iter(), &trusted),
            ip("52.89.214.238")
        );
    }

    #[test]
    fn lists_parse_addresses_and_blocks() {
        assert!(parse_list(["1.2.3.4", " 2001:db8::/32 ", ""]).is_ok());
        assert_eq!(parse_list(["1.2.3.4", "nope"]), Err("nope".to_owned()));
        let nets = parse_list(["52.89.214.238"]).expect("parses");
        assert!(allowed(ip("52.89.214.238"), &nets));
        assert!(!allowed(ip("52.89.214.239"), &nets));
    }
}
