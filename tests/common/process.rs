//! Example binaries run as processes, the way a user runs them.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A child process whose stdout and stderr are drained into one text for its whole life (so
/// that its logs can never fill a pipe and stall it); killed when dropped.
pub struct CapturedProcess {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl CapturedProcess {
    /// Starts `command` with both streams captured; `what` names it in failures.
    pub fn spawn(command: &mut Command, what: &str) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for stream in streams {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut output) = output.lock() {
                        output.push_str(&line);
                        output.push('\n');
                    }
                }
            });
        }
        Self { child, output }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What it printed so far (stdout and stderr, in the order read).
    pub fn printed(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits (30 s at most) for its `listening on ADDRESS` line; returns the address.
    pub fn listening(&mut self) -> String {
        let started = Instant::now();
        loop {
            let printed = self.printed();
            if let Some(address) = printed
                .lines()
                .find_map(|l| l.strip_prefix("listening on "))
            {
                return address.trim().to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the example exited ({status}) before listening:\n{printed}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the example did not listen within 30 s:\n{printed}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (20 s at most) for it to exit; returns its status and everything it printed.
    pub fn exit(&mut self) -> (ExitStatus, String) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.printed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the example did not exit:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CapturedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
