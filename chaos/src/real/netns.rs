//! The hosts of a real-process run: one Linux network namespace per
//! validator and one for the workload client, joined by veth pairs to a
//! bridge in a hub namespace of their own. Addresses come from
//! [`SUBNET`]`.0/24`, which exists only inside these namespaces: no packet
//! of a run reaches the machine's own interfaces, and nothing of the
//! machine's own network configuration is touched.
//!
//! Faults act inside a validator's namespace only: nftables (or iptables)
//! rules drop its traffic to and from chosen addresses (a partition, or
//! random loss), and a qdisc on its interfaces delays or throttles it.
//! [`Netns`] deletes every namespace it created when dropped, after
//! killing whatever still runs inside them (only processes of this run
//! live there).

use std::fs::File;
use std::os::fd::AsRawFd;

use super::cmd;
use super::error::RealError;

/// The first three octets of the run's private /24.
pub const SUBNET: &str = "10.77.0";
/// The client namespace's address.
pub const CLIENT_HOST: u8 = 100;
/// Validators listen on these ports, each in its own namespace.
pub const PEER_PORT: u16 = 7100;
pub const API_PORT: u16 = 7101;
/// nftables table holding a validator's partition rules.
const PARTITION_TABLE: &str = "neuroshard_chaos_partition";
/// nftables table holding a validator's random-loss rules.
const LOSS_TABLE: &str = "neuroshard_chaos_loss";
/// Most validators a run's /24 is laid out for.
pub const MAX_VALIDATORS: u32 = 64;

/// Address of validator `i`.
pub fn validator_ip(i: u32) -> String {
    format!("{SUBNET}.{}", 11 + i)
}

pub fn client_ip() -> String {
    format!("{SUBNET}.{CLIENT_HOST}")
}

/// Which packet filter the machine offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firewall {
    Nftables,
    Iptables,
}

/// How a slow link is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shaper {
    /// `tc netem`: delay with jitter (and loss).
    Netem,
    /// The kernel lacks netem: `tc tbf` throttles the link instead, so
    /// anything beyond a trickle queues (delay under load).
    Tbf,
}

/// A partition: `sides` of validators that reach only their own side; the
/// client reaches the validators of `client_side` (all when `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub sides: Vec<Vec<u32>>,
    pub client_side: Option<usize>,
}

impl Partition {
    /// Addresses validator `i` must not exchange packets with.
    pub fn blocked_for(&self, i: u32, validators: u32) -> Vec<String> {
        let mine = self.sides.iter().position(|s| s.contains(&i));
        let mut out: Vec<String> = (0..validators)
            .filter(|&j| j != i)
            .filter(|&j| mine.is_none() || self.sides.iter().position(|s| s.contains(&j)) != mine)
            .map(validator_ip)
            .collect();
        if self.client_side.is_some() && self.client_side != mine {
            out.push(client_ip());
        }
        out
    }

    pub fn describe(&self) -> String {
        let mut sides: Vec<String> = self
            .sides
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let names: Vec<String> = s.iter().map(|v| format!("v{v}")).collect();
                let client = if self.client_side == Some(k) {
                    " + clients"
                } else {
                    ""
                };
                format!("{{{}{client}}}", names.join(", "))
            })
            .collect();
        if self.client_side.is_none() {
            sides.push("(clients reach every side)".to_owned());
        }
        sides.join(" | ")
    }
}

/// The namespaces of one run. Created once; every scenario reuses them and
/// [`Netns::clear_faults`] returns them to a clean state in between.
pub struct Netns {
    prefix: String,
    validators: u32,
    /// Every namespace created so far, for teardown.
    created: Vec<String>,
    pub firewall: Firewall,
    pub shaper: Shaper,
}

impl Netns {
    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    fn client(&self) -> String {
        format!("{}-client", self.prefix)
    }

    /// The namespace validator `i` runs in.
    pub fn validator(&self, i: u32) -> String {
        format!("{}-v{i}", self.prefix)
    }

    /// Checks the tools, creates the namespaces, bridge, links and
    /// addresses. `prefix` names every namespace of the run.
    pub fn create(prefix: &str, validators: u32) -> Result<Netns, RealError> {
        if validators == 0 || validators > MAX_VALIDATORS {
            return Err(RealError::invalid(
                "validators",
                format!("{validators}: a run lays out 1..={MAX_VALIDATORS} validators"),
            ));
        }
        let firewall = if cmd::exists("nft") {
            Firewall::Nftables
        } else if cmd::exists("iptables") {
            Firewall::Iptables
        } else {
            return Err(RealError::invalid(
                "packet filter",
                "neither nft nor iptables is installed (apt-get install -y nftables iptables)",
            ));
        };
        let mut net = Netns {
            prefix: prefix.to_owned(),
            validators,
            created: Vec::new(),
            firewall,
            shaper: Shaper::Tbf,
        };
        // From here on, a failure drops `net`, which deletes what exists.
        net.add_ns(&net.hub())?;
        let hub = net.hub();
        cmd::run("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        cmd::run("ip", &["-n", &hub, "link", "set", "br0", "up"])?;
        net.add_ns(&net.client())?;
        net.attach(&net.client(), "hc", &format!("{}/24", client_ip()))?;
        for i in 0..validators {
            let ns = net.validator(i);
            net.add_ns(&ns)?;
            net.attach(&ns, &format!("h{i}"), &format!("{}/24", validator_ip(i)))?;
        }
        net.shaper = if net.netem_available() {
            Shaper::Netem
        } else {
            Shaper::Tbf
        };
        Ok(net)
    }

    fn add_ns(&mut self, name: &str) -> Result<(), RealError> {
        cmd::run("ip", &["netns", "add", name])?;
        self.created.push(name.to_owned());
        cmd::run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// A veth pair: `hub_end` on the bridge, `eth0` with `cidr` in `ns`.
    fn attach(&self, ns: &str, hub_end: &str, cidr: &str) -> Result<(), RealError> {
        let hub = self.hub();
        cmd::run(
            "ip",
            &[
                "-n", &hub, "link", "add", hub_end, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ],
        )?;
        cmd::run(
            "ip",
            &["-n", &hub, "link", "set", hub_end, "master", "br0", "up"],
        )?;
        cmd::run("ip", &["-n", ns, "addr", "add", cidr, "dev", "eth0"])?;
        cmd::run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    fn netem_available(&self) -> bool {
        let hub = self.hub();
        let added = cmd::run(
            "ip",
            &[
                "netns", "exec", &hub, "tc", "qdisc", "add", "dev", "hc", "root", "netem", "delay",
                "1ms",
            ],
        )
        .is_ok();
        if added {
            let _ = cmd::run(
                "ip",
                &[
                    "netns", "exec", &hub, "tc", "qdisc", "del", "dev", "hc", "root",
                ],
            );
        }
        added
    }

    /// Moves this process (before it starts any thread) into the client
    /// namespace: every socket it opens from then on, and every process it
    /// starts, lives there.
    pub fn enter_client(&self) -> Result<(), RealError> {
        let path = format!("/var/run/netns/{}", self.client());
        let file = File::open(&path).map_err(RealError::io(std::path::Path::new(&path)))?;
        // SAFETY: setns(2) on a namespace file descriptor we own; it changes
        // only this thread's network namespace, and no other thread exists
        // yet (the caller guarantees it), so every later thread inherits it.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(RealError::Io {
                path,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// `ip netns exec <validator ns>`: the prefix of a command run there.
    pub fn exec_prefix(&self, i: u32) -> Vec<String> {
        vec![
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            self.validator(i),
        ]
    }

    fn in_validator(&self, i: u32, program: &str, args: &[&str]) -> Result<String, RealError> {
        let ns = self.validator(i);
        let mut full = vec!["netns", "exec", ns.as_str(), program];
        full.extend_from_slice(args);
        cmd::run("ip", &full)
    }

    fn nft_script(&self, i: u32, script: &str) -> Result<(), RealError> {
        let ns = self.validator(i);
        cmd::run_with_input(
            "ip",
            &["netns", "exec", &ns, "nft", "-f", "-"],
            Some(script),
        )
        .map(|_| ())
    }

    /// Drops every packet between each validator and the addresses on the
    /// other sides.
    pub fn partition(&self, p: &Partition) -> Result<(), RealError> {
        for i in 0..self.validators {
            let blocked = p.blocked_for(i, self.validators);
            self.heal_partition_of(i)?;
            if blocked.is_empty() {
                continue;
            }
            match self.firewall {
                Firewall::Nftables => {
                    let set = blocked.join(", ");
                    self.nft_script(
                        i,
                        &format!(
                            "table inet {PARTITION_TABLE} {{\n\
                             chain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n\
                             chain output {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n\
                             }}\n"
                        ),
                    )?;
                }
                Firewall::Iptables => {
                    for ip in &blocked {
                        self.in_validator(i, "iptables", &["-A", "INPUT", "-s", ip, "-j", "DROP"])?;
                        self.in_validator(
                            i,
                            "iptables",
                            &["-A", "OUTPUT", "-d", ip, "-j", "DROP"],
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    fn heal_partition_of(&self, i: u32) -> Result<(), RealError> {
        match self.firewall {
            Firewall::Nftables => {
                // Deleting a table that does not exist fails: create it
                // empty first, so the delete always has something to delete.
                self.nft_script(
                    i,
                    &format!(
                        "table inet {PARTITION_TABLE} {{}}\ndelete table inet {PARTITION_TABLE}\n"
                    ),
                )
            }
            Firewall::Iptables => self.in_validator(i, "iptables", &["-F"]).map(|_| ()),
        }
    }

    /// Removes every partition rule.
    pub fn heal_partition(&self) -> Result<(), RealError> {
        for i in 0..self.validators {
            self.heal_partition_of(i)?;
        }
        Ok(())
    }

    /// Validator `i` loses `percent` % of the packets it sends and receives.
    fn set_loss(&self, i: u32, percent: u32) -> Result<(), RealError> {
        match self.firewall {
            Firewall::Nftables => self.nft_script(
                i,
                &format!(
                    "table inet {LOSS_TABLE} {{\n\
                     chain input {{ type filter hook input priority 0; policy accept; iifname \"eth0\" numgen random mod 100 < {percent} drop; }}\n\
                     chain output {{ type filter hook output priority 0; policy accept; oifname \"eth0\" numgen random mod 100 < {percent} drop; }}\n\
                     }}\n"
                ),
            ),
            Firewall::Iptables => {
                let p = format!("{:.2}", f64::from(percent) / 100.0);
                for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
                    self.in_validator(
                        i,
                        "iptables",
                        &[
                            "-A", chain, dir, "eth0", "-m", "statistic", "--mode", "random",
                            "--probability", &p, "-j", "DROP",
                        ],
                    )?;
                }
                Ok(())
            }
        }
    }

    /// Validator `i`'s link: delayed by `delay_ms` ± `jitter_ms` and losing
    /// `loss_percent` % of packets, both ways. Returns what was applied
    /// (netem, or the throttle standing in for it, plus the loss rule).
    pub fn degrade_link(
        &self,
        i: u32,
        delay_ms: u32,
        jitter_ms: u32,
        loss_percent: u32,
    ) -> Result<String, RealError> {
        let hub = self.hub();
        let hub_end = format!("h{i}");
        match self.shaper {
            Shaper::Netem => {
                let delay = format!("{delay_ms}ms");
                let jitter = format!("{jitter_ms}ms");
                let loss = format!("{loss_percent}%");
                let netem = ["root", "netem", "delay", &delay, &jitter, "loss", &loss];
                let mut args = vec!["qdisc", "replace", "dev", "eth0"];
                args.extend_from_slice(&netem);
                self.in_validator(i, "tc", &args)?;
                let mut args = vec![
                    "netns", "exec", &hub, "tc", "qdisc", "replace", "dev", &hub_end,
                ];
                args.extend_from_slice(&netem);
                cmd::run("ip", &args)?;
                Ok(format!(
                    "tc netem delay {delay_ms}ms ±{jitter_ms}ms loss {loss_percent}% on v{i}'s link, both directions"
                ))
            }
            Shaper::Tbf => {
                let tbf = [
                    "root", "tbf", "rate", "256kbit", "burst", "4kb", "latency", "500ms",
                ];
                let mut args = vec!["qdisc", "replace", "dev", "eth0"];
                args.extend_from_slice(&tbf);
                self.in_validator(i, "tc", &args)?;
                let mut args = vec![
                    "netns", "exec", &hub, "tc", "qdisc", "replace", "dev", &hub_end,
                ];
                args.extend_from_slice(&tbf);
                cmd::run("ip", &args)?;
                self.set_loss(i, loss_percent)?;
                Ok(format!(
                    "this kernel has no tc netem: v{i}'s link throttled to 256 kbit/s (tc tbf, up to 500 ms queueing) and losing {loss_percent}% (packet filter), both directions"
                ))
            }
        }
    }

    /// Restores validator `i`'s link (qdiscs and loss rules).
    pub fn restore_link(&self, i: u32) -> Result<(), RealError> {
        let hub = self.hub();
        let hub_end = format!("h{i}");
        // A link without a root qdisc refuses the delete: ignore that one.
        let _ = self.in_validator(i, "tc", &["qdisc", "del", "dev", "eth0", "root"]);
        let _ = cmd::run(
            "ip",
            &[
                "netns", "exec", &hub, "tc", "qdisc", "del", "dev", &hub_end, "root",
            ],
        );
        match self.firewall {
            Firewall::Nftables => self.nft_script(
                i,
                &format!("table inet {LOSS_TABLE} {{}}\ndelete table inet {LOSS_TABLE}\n"),
            ),
            // Partition and loss rules share iptables' chains: flushing
            // removes both, and no scenario degrades a partitioned link.
            Firewall::Iptables => self.in_validator(i, "iptables", &["-F"]).map(|_| ()),
        }
    }

    /// Every fault removed: no partition, no loss, no shaping.
    pub fn clear_faults(&self) -> Result<(), RealError> {
        self.heal_partition()?;
        for i in 0..self.validators {
            self.restore_link(i)?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let me = std::process::id().to_string();
        for ns in self.created.iter().rev() {
            // Only this run's validators can live in these namespaces (and
            // this process itself, in the client one).
            if let Ok(pids) = cmd::run("ip", &["netns", "pids", ns]) {
                for pid in pids.split_whitespace().filter(|p| *p != me) {
                    let _ = cmd::run("kill", &["-KILL", pid]);
                }
            }
            if let Err(e) = cmd::run("ip", &["netns", "del", ns]) {
                eprintln!("chaos real: cleanup: {e}");
            }
        }
    }
}

/// Whether this machine lets us create network namespaces (root, iproute2,
/// a kernel with netns): tries one and removes it. The error says why not.
pub fn probe(prefix: &str) -> Result<(), RealError> {
    if !cmd::exists("ip") {
        return Err(RealError::invalid(
            "iproute2",
            "`ip` is not installed (apt-get install -y iproute2)",
        ));
    }
    let name = format!("{prefix}-probe");
    cmd::run("ip", &["netns", "add", &name])?;
    let veth = cmd::run(
        "ip",
        &[
            "-n", &name, "link", "add", "p0", "type", "veth", "peer", "name", "p1",
        ],
    );
    let _ = cmd::run("ip", &["netns", "del", &name]);
    veth.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_blocks_the_other_sides_and_the_client_when_it_is_elsewhere() {
        let p = Partition {
            sides: vec![vec![0], vec![1, 2, 3]],
            client_side: None,
        };
        assert_eq!(
            p.blocked_for(0, 4),
            vec![validator_ip(1), validator_ip(2), validator_ip(3)]
        );
        assert_eq!(p.blocked_for(2, 4), vec![validator_ip(0)]);
        let p = Partition {
            sides: vec![vec![0, 1, 2], vec![3]],
            client_side: Some(1),
        };
        assert_eq!(
            p.blocked_for(3, 4),
            vec![validator_ip(0), validator_ip(1), validator_ip(2)]
        );
        assert_eq!(p.blocked_for(1, 4), vec![validator_ip(3), client_ip()]);
        assert_eq!(p.describe(), "{v0, v1, v2} | {v3 + clients}");
    }
}
