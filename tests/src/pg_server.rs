//! A PostgreSQL server of a test's own, for tests that restart it under load (the shared one on
//! 5432 serves every other test at the same time). Debian's binaries
//! (`/usr/lib/postgresql/*/bin`, installed by `scripts/setup --postgres`), a data dir in a temp
//! dir, loopback TCP only, no fsync (the data does not outlive the test). `initdb` refuses to run
//! as root, so as root the server runs as the package's `postgres` user, as `scripts/setup` does.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

/// A running server; stopped (immediate mode) on drop.
pub struct PgServer {
    bin: PathBuf,
    /// Owns the data dir.
    dir: tempfile::TempDir,
    port: u16,
    /// Run the binaries as the `postgres` user (the test runs as root).
    as_postgres: bool,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
}

impl PgServer {
    /// initdb and start, once it accepts connections.
    pub fn start() -> PgServer {
        let bin = newest_bin().expect(
            "no PostgreSQL server binaries under /usr/lib/postgresql: run scripts/setup --postgres",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let port = crate::process::free_port();
        let server = PgServer {
            bin,
            dir,
            port,
            as_postgres,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        };
        let data = server.data();
        run(server.command("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]));
        server.pg_ctl("start");
        server
    }

    /// `pg_ctl restart` (fast mode: open transactions are rolled back, connections cut), back
    /// once the server accepts connections again.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
             -c max_connections=200",
            self.port
        );
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-m", "fast", "-o", &options, action]));
    }

    /// `name` from the server's bin dir, as the `postgres` user when the test runs as root.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// The bin dir of the newest PostgreSQL installed from Debian's packages.
fn newest_bin() -> Option<PathBuf> {
    let mut bins: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    bins.sort();
    bins.pop().map(|(_, bin)| bin)
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
