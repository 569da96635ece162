//! Real-time scheduling of the daemon's hot threads (ingest, inference, output): an optional `SCHED_FIFO`
//! priority and CPU pinning, so that a busy host does not preempt a control step between its kernel launches.
//! Linux only, as the whole daemon is. Needs `CAP_SYS_NICE` (or an `rtprio` limit) for the priority; when the
//! kernel refuses, the thread keeps the default scheduler and the daemon says so once per thread.

use serde::{Deserialize, Serialize};

/// `[realtime]` in the daemon's TOML: scheduling of the ingest, inference and output threads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeSection {
    /// `SCHED_FIFO` priority, 1 (lowest) ..= 99; 0 (the default) keeps the normal scheduler. A controller's own
    /// real-time loop usually runs at 80–90: stay below it.
    pub priority: u8,
    /// CPUs the hot threads are pinned to (all three share the set); empty (the default): not pinned.
    pub cpus: Vec<usize>,
}

/// Why a thread could not be given the requested scheduling.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// `pthread_setschedparam` failed (usually `EPERM`: no `CAP_SYS_NICE` and no `rtprio` limit).
    #[error("SCHED_FIFO priority {priority}: {source} (grant CAP_SYS_NICE or an rtprio limit, or set realtime.priority = 0)")]
    Priority {
        /// The requested priority.
        priority: u8,
        /// The OS error.
        source: std::io::Error,
    },
    /// `sched_setaffinity` failed (a CPU that does not exist or is outside the process's cpuset).
    #[error("pinning to CPUs {cpus:?}: {source}")]
    Affinity {
        /// The requested CPUs.
        cpus: Vec<usize>,
        /// The OS error.
        source: std::io::Error,
    },
}

impl RealtimeSection {
    /// Whether anything is requested.
    pub fn is_set(&self) -> bool {
        self.priority > 0 || !self.cpus.is_empty()
    }

    /// Range check (the priority range of `SCHED_FIFO`, CPU indices the affinity mask can hold).
    /// The error names the field (`priority` or `cpus`) and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.priority > 99 {
            return Err(("priority", format!("{} is not in 0..=99", self.priority)));
        }
        let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
        if let Some(cpu) = self.cpus.iter().find(|&&c| c >= max) {
            return Err(("cpus", format!("CPU {cpu} is beyond the {max} an affinity mask holds")));
        }
        Ok(())
    }

    /// Applies the section to the calling thread.
    pub fn apply_to_current_thread(&self) -> Result<(), RealtimeError> {
        if !self.cpus.is_empty() {
            // SAFETY: `cpu_set_t` is plain bits; an all-zero value is the empty set CPU_ZERO would produce.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            for &cpu in &self.cpus {
                // SAFETY: `check` keeps every index below the mask's capacity (CPU_SET does not bound-check).
                unsafe { libc::CPU_SET(cpu, &mut set) };
            }
            // SAFETY: pid 0 is the calling thread; `set` is a valid mask of the size passed.
            let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
            if rc != 0 {
                return Err(RealtimeError::Affinity {
                    cpus: self.cpus.clone(),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        if self.priority > 0 {
            let param = libc::sched_param { sched_priority: i32::from(self.priority) };
            // SAFETY: `pthread_self` is the calling thread; `param` is a valid, initialised sched_param.
            let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
            if rc != 0 {
                return Err(RealtimeError::Priority {
                    priority: self.priority,
                    source: std::io::Error::from_raw_os_error(rc),
                });
            }
        }
        Ok(())
    }
}

/// The calling thread's scheduling policy and priority (for logs and tests).
pub fn current_policy() -> (i32, i32) {
    let mut policy = 0;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: both out-pointers are valid for writes; `pthread_self` is the calling thread.
    let rc = unsafe { libc::pthread_getschedparam(libc::pthread_self(), &mut policy, &mut param) };
    if rc != 0 {
        return (-1, -1);
    }
    (policy, param.sched_priority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_changes_nothing() {
        let before = current_policy();
        RealtimeSection::default().apply_to_current_thread().unwrap();
        assert_eq!(current_policy(), before);
        assert!(!RealtimeSection::default().is_set());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(RealtimeSection { priority: 100, cpus: vec![] }.check().is_err());
        assert!(RealtimeSection { priority: 0, cpus: vec![1 << 20] }.check().is_err());
        assert!(RealtimeSection { priority: 50, cpus: vec![0] }.check().is_ok());
    }

    #[test]
    fn pinning_to_cpu_zero_takes_effect() {
        std::thread::spawn(|| {
            RealtimeSection { priority: 0, cpus: vec![0] }.apply_to_current_thread().unwrap();
            // SAFETY: sched_getcpu has no preconditions.
            assert_eq!(unsafe { libc::sched_getcpu() }, 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_refused_priority_names_the_fix_or_is_granted() {
        std::thread::spawn(|| match (RealtimeSection { priority: 10, cpus: vec![] }).apply_to_current_thread() {
            Ok(()) => assert_eq!(current_policy(), (libc::SCHED_FIFO, 10)),
            Err(e) => {
                assert!(matches!(e, RealtimeError::Priority { priority: 10, .. }));
                assert!(e.to_string().contains("CAP_SYS_NICE"), "{e}");
            }
        })
        .join()
        .unwrap();
    }
}
