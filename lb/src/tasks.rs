//! Background tasks that belong to one piece of state and must end with it.

use tokio::task::JoinHandle;

/// Tasks aborted when this is dropped: feeders that are replaced on every reload.
#[derive(Default)]
pub struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }

    pub fn extend(&mut self, other: Tasks) {
        let mut other = other;
        self.0.append(&mut other.0);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
