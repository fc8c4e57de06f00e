//! Several `cairn serve` child processes on PostgreSQL, each with a data dir (and host id) of
//! its own: the several-hosts tests.

use crate::process::{Killed, free_port, spawn_host, wait_healthy};

/// The hosts, killed when dropped.
pub struct HostGroup {
    pub children: Vec<Killed>,
    pub dirs: Vec<tempfile::TempDir>,
    /// `http://127.0.0.1:PORT` of each host's ingress and admin API.
    pub ingress: Vec<String>,
    pub admin: Vec<String>,
}

impl HostGroup {
    /// One host per database URL (the same database, or one reached through a proxy), with the
    /// providers pointed at the fake at `mock`; returns once every host answers.
    pub async fn start(http: &reqwest::Client, exe: &str, urls: &[&str], mock: &str) -> HostGroup {
        let ports: Vec<(u16, u16)> = urls.iter().map(|_| (free_port(), free_port())).collect();
        let dirs: Vec<_> = urls.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        let children = urls
            .iter()
            .zip(&ports)
            .zip(&dirs)
            .map(|((url, &(ingress, admin)), dir)| {
                Killed(spawn_host(
                    exe,
                    dir.path(),
                    Some(url),
                    mock,
                    ingress,
                    admin,
                    0,
                ))
            })
            .collect();
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let group = HostGroup {
            children,
            dirs,
            ingress: ports.iter().map(|&(ingress, _)| url(ingress)).collect(),
            admin: ports.iter().map(|&(_, admin)| url(admin)).collect(),
        };
        for admin in &group.admin {
            wait_healthy(http, admin).await;
        }
        group
    }

    /// Host `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dirs[i].path().join("host-0.log")).unwrap_or_default()
    }

    /// Fails the test if host `i` has exited.
    pub fn assert_running(&mut self, i: usize) {
        if let Ok(Some(exit)) = self.children[i].0.try_wait() {
            panic!("host {i} exited ({exit}):\n{}", self.log(i));
        }
    }

    /// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) to host `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.children[i].0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} {pid}");
    }
}
