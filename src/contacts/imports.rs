//! The contact imports running in this process.
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// This process's running imports. A stop ends them after the batch each is writing; they stay
/// `running` with their file kept, and the next start runs them again ([`resume`]).
#[derive(Clone, Default)]
pub struct Imports {
    pub(super) stop: CancellationToken,
    pub(super) running: TaskTracker,
}

impl Imports {
    /// Stops every running import between two batches; returns once they have stopped.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.running.close();
        self.running.wait().await;
    }
}
