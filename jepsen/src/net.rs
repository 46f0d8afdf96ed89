//! The test network: one network namespace per node, each joined to a bridge
//! in the root namespace by a veth pair. Clients in the root namespace reach
//! nodes through the bridge; faults are iptables DROP rules inside the node
//! namespaces, so they never touch the host's own firewall.

use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context;

/// Which of ten disjoint networks this run uses (names `oj<slot>-*`, subnet
/// 10.213.<100+slot>.0/24), so concurrent runs (a soak and a CI smoke) do
/// not clean up each other. Fixed once at startup.
static SLOT: OnceLock<u8> = OnceLock::new();

pub fn set_slot(slot: u8) -> anyhow::Result<()> {
    anyhow::ensure!(slot <= 9, "--net-slot must be 0..=9");
    SLOT.set(slot)
        .map_err(|_| anyhow::anyhow!("network slot already chosen"))
}

fn slot() -> u8 {
    *SLOT.get_or_init(|| 0)
}

fn prefix() -> String {
    format!("oj{}", slot())
}

fn subnet() -> String {
    format!("10.213.{}", 100 + slot() as u16)
}

pub struct Net {
    nodes: usize,
}

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    anyhow::ensure!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

pub fn ns(node: usize) -> String {
    format!("{}-n{node}", prefix())
}

pub fn ip(node: usize) -> String {
    format!("{}.{}", subnet(), 10 + node)
}

fn bridge() -> String {
    format!("{}-br", prefix())
}

impl Net {
    /// Builds the network for nodes 1..=n after removing leftovers of an
    /// earlier run that died before cleaning up.
    pub fn setup(n: usize) -> anyhow::Result<Net> {
        cleanup_leftovers();
        let net = Net { nodes: n };
        let br = bridge();
        sh(&["ip", "link", "add", &br, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}.1/24", subnet()),
            "dev",
            &br,
        ])?;
        sh(&["ip", "link", "set", &br, "up"])?;
        for i in 1..=n {
            let (ns, host, peer) = (
                ns(i),
                format!("{}-v{i}", prefix()),
                format!("{}-p{i}", prefix()),
            );
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
            ])?;
            sh(&["ip", "link", "set", &peer, "netns", &ns])?;
            sh(&["ip", "link", "set", &host, "master", &br])?;
            sh(&["ip", "link", "set", &host, "up"])?;
            let addr = format!("{}/24", ip(i));
            sh(&[
                "ip", "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &peer,
            ])?;
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", &peer, "up"])?;
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Packets from `from` to `to` are dropped (one direction).
    pub fn drop_link(&self, from: usize, to: usize) -> anyhow::Result<()> {
        let src = ip(from);
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns(to),
            "iptables",
            "-A",
            "INPUT",
            "-s",
            &src,
            "-j",
            "DROP",
        ])
    }

    /// Removes every DROP rule.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 1..=self.nodes {
            sh(&["ip", "netns", "exec", &ns(i), "iptables", "-F", "INPUT"])?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        cleanup_leftovers();
    }
}

/// Kills processes left in our namespaces, deletes the namespaces (which
/// removes their veths and iptables rules) and the bridge. Errors are
/// ignored: most of these usually do not exist.
pub fn cleanup_leftovers() {
    let listed = Command::new("ip").args(["netns", "list"]).output();
    let names: Vec<String> = listed
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n.starts_with(&format!("{}-", prefix())))
        .collect();
    for name in names {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SIGCONT first: a stopped process would otherwise linger
                    // until someone continues it.
                    unsafe {
                        libc::kill(pid, libc::SIGCONT);
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        let _ = sh(&["ip", "netns", "del", &name]);
    }
    // Deleting a namespace frees its veths only when the kernel's namespace
    // cleanup runs (after the killed processes are gone), so a run started
    // right after another could find `oj<slot>-v1` still there and fail with
    // "File exists" (CI did). Deleting the root-side ends (and the bridge)
    // ourselves is synchronous and takes the peers with them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ours = our_links();
        if ours.is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        for link in ours {
            let _ = sh(&["ip", "link", "del", &link]);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Interfaces in the root namespace named `oj<slot>-*` (bridge, veth ends).
fn our_links() -> Vec<String> {
    let listed = Command::new("ip").args(["-o", "link", "show"]).output();
    let text = listed
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    link_names(&text, &format!("{}-", prefix()))
}

/// Names from `ip -o link show` output (`3: oj0-v1@if2: <...> ...`) that
/// start with `prefix`, without the `@peer` suffix.
fn link_names(listing: &str, prefix: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::link_names;

    #[test]
    fn link_listing_is_parsed_into_our_names_only() {
        let listing = "1: lo: <LOOPBACK,UP> mtu 65536\n\
                       7: oj0-br: <BROADCAST> mtu 1500\n\
                       9: oj0-v1@if8: <BROADCAST> mtu 1500 master oj0-br\n\
                       11: oj1-v1@if10: <BROADCAST> mtu 1500\n\
                       12: eth0: <UP> mtu 1500\n";
        assert_eq!(link_names(listing, "oj0-"), vec!["oj0-br", "oj0-v1"]);
        assert!(link_names(listing, "oj2-").is_empty());
    }
}
