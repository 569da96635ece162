//! An action-only subscriber: prints every action `swm-loop` publishes (latest value; a slow reader only ever
//! misses older actions, it never slows the daemon down). Links only `swm-ipc`.
//!
//! ```text
//! cargo run --release -p swm-loop --example actions -- [PREFIX]
//! ```

use std::time::Duration;

use swm_ipc::transport::{self as ipc, EventKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prefix = std::env::args().nth(1).unwrap_or_else(|| "swm".into());
    let node = ipc::node(&format!("actions-{}", std::process::id()))?;
    let actions = ipc::action_subscriber(&ipc::action_service(&node, &prefix)?)?;
    let listener = ipc::listener(&ipc::events_service(&node, &prefix)?)?;
    let mut last = 0;
    loop {
        let mut shutdown = false;
        listener.timed_wait(
            |e| shutdown |= EventKind::from_id(e.id) == Some(EventKind::Shutdown),
            Duration::from_secs(1),
        )?;
        while let Some(sample) = actions.receive()? {
            let slot = sample.payload();
            if slot.sequence != last {
                last = slot.sequence;
                println!(
                    "action {} for observation {}: {:?} {:?} cost {}",
                    slot.sequence,
                    slot.observation_sequence,
                    slot.status(),
                    slot.action(),
                    slot.cost
                );
            }
        }
        if shutdown {
            println!("swm-loop shut down");
            return Ok(());
        }
    }
}
