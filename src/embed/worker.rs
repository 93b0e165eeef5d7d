//! The one model worker every model runs on (the text-embeddings-inference pattern): a model
//! owned by a dedicated OS thread, fed through a bounded queue, answering each request through
//! a oneshot channel. Requests from different callers that share parameters (the same purpose,
//! the same query) are merged into one forward pass up to a cost budget (tokens or items), and
//! split back per caller. A panic inside the model fails the requests of that pass with an
//! error and leaves the worker running for the next.

use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::fault::panic_text;

/// A model a [`Worker`] can run.
pub trait Model: Send + 'static {
    /// One item of a request (a text, a passage, a file).
    type Input: Send + 'static;
    /// The answer for one input.
    type Output: Send + 'static;
    /// What requests must share to be run together (a purpose, a query).
    type Params: PartialEq + Clone + Send + 'static;

    /// The cost of one input against the batch budget (its tokens, or 1).
    fn cost(&self, input: &Self::Input) -> usize;

    /// Runs one batch; returns one output per input, in order.
    fn run(
        &mut self,
        params: &Self::Params,
        inputs: Vec<Self::Input>,
    ) -> Result<Vec<Self::Output>, String>;
}

struct Job<M: Model> {
    params: M::Params,
    inputs: Vec<M::Input>,
    reply: oneshot::Sender<Result<Vec<M::Output>, String>>,
}

/// Handle to a model on its worker thread. Cheap to clone; the thread ends when the last
/// handle is dropped.
pub struct Worker<M: Model> {
    sender: mpsc::SyncSender<Job<M>>,
}

impl<M: Model> Clone for Worker<M> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<M: Model> Worker<M> {
    /// Moves `model` onto a new thread named `name`, with a queue of `queue` requests and a
    /// batch budget of `budget` (sum of input costs; a request larger than the budget runs
    /// alone).
    pub fn spawn(name: &str, model: M, queue: usize, budget: usize) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel::<Job<M>>(queue.max(1));
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || serve(model, receiver, budget.max(1)))?;
        Ok(Self { sender })
    }

    /// Runs `inputs` under `params` on the worker thread (merged with other callers' requests
    /// when they fit the budget). Waiting for a full queue happens off the async runtime.
    pub async fn call(
        &self,
        params: M::Params,
        inputs: Vec<M::Input>,
    ) -> Result<Vec<M::Output>, WorkerError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            params,
            inputs,
            reply,
        };
        let sender = self.sender.clone();
        match sender.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || sender.send(job))
                    .await
                    .map_err(|_| WorkerError::Gone)?
                    .map_err(|_| WorkerError::Gone)?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(WorkerError::Gone),
        }
        answer
            .await
            .map_err(|_| WorkerError::Gone)?
            .map_err(WorkerError::Failed)
    }
}

/// Why a worker call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("the model thread stopped")]
    Gone,
    #[error("{0}")]
    Failed(String),
}

/// The worker loop: take a request, add queued ones with the same parameters while the budget
/// allows, run them as one batch, answer each.
fn serve<M: Model>(mut model: M, receiver: mpsc::Receiver<Job<M>>, budget: usize) {
    let mut held: Option<Job<M>> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut cost: usize = first.inputs.iter().map(|i| model.cost(i)).sum();
        let params = first.params.clone();
        let mut batch = vec![first];
        while cost < budget {
            match receiver.try_recv() {
                Ok(job) if job.params == params => {
                    let more: usize = job.inputs.iter().map(|i| model.cost(i)).sum();
                    if cost + more > budget {
                        held = Some(job);
                        break;
                    }
                    cost += more;
                    batch.push(job);
                }
                Ok(job) => {
                    held = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = batch.iter().map(|j| j.inputs.len()).collect();
        let mut replies = Vec::with_capacity(batch.len());
        let mut inputs = Vec::new();
        for job in batch {
            replies.push(job.reply);
            inputs.extend(job.inputs);
        }
        let total = inputs.len();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.run(&params, inputs)))
                .unwrap_or_else(|panic| Err(format!("the model crashed: {}", panic_text(&*panic))));
        match result {
            Ok(outputs) if outputs.len() == total => {
                let mut outputs = outputs.into_iter();
                for (reply, size) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(outputs.by_ref().take(size).collect()));
                }
            }
            Ok(outputs) => {
                let error = format!(
                    "the model gave {} outputs for {total} inputs",
                    outputs.len()
                );
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles numbers; records each batch; panics on 13.
    struct Doubler {
        batches: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
        gate: std::sync::Arc<std::sync::Barrier>,
        first: bool,
    }

    impl Model for Doubler {
        type Input = i64;
        type Output = i64;
        type Params = bool;
        fn cost(&self, _: &i64) -> usize {
            1
        }
        fn run(&mut self, negate: &bool, inputs: Vec<i64>) -> Result<Vec<i64>, String> {
            if self.first {
                // Hold the first batch until the test has queued more requests.
                self.first = false;
                self.gate.wait();
            }
            self.batches.lock().unwrap().push(inputs.len());
            if inputs.contains(&13) {
                panic!("unlucky");
            }
            Ok(inputs
                .iter()
                .map(|x| if *negate { -2 * x } else { 2 * x })
                .collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_across_callers_splits_replies_and_survives_panics() {
        let batches = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
        let worker = Worker::spawn(
            "test",
            Doubler {
                batches: batches.clone(),
                gate: gate.clone(),
                first: true,
            },
            16,
            5,
        )
        .unwrap();
        let first = tokio::spawn({
            let w = worker.clone();
            async move { w.call(false, vec![1]).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // Queued while the first batch runs: two fit one batch (budget 5), the third has other
        // parameters, the fourth would overflow the budget.
        let calls = [
            (false, vec![2, 3]),
            (false, vec![4, 5]),
            (true, vec![6]),
            (true, vec![7, 8, 9, 10, 11]),
        ];
        let mut handles = Vec::new();
        for (negate, inputs) in calls.clone() {
            let w = worker.clone();
            handles.push(tokio::spawn(async move { w.call(negate, inputs).await }));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::task::spawn_blocking(move || gate.wait())
            .await
            .unwrap();
        assert_eq!(first.await.unwrap().unwrap(), vec![2]);
        let mut answers = Vec::new();
        for h in handles {
            answers.push(h.await.unwrap().unwrap());
        }
        assert_eq!(
            answers,
            vec![
                vec![4, 6],
                vec![8, 10],
                vec![-12],
                vec![-14, -16, -18, -20, -22]
            ]
        );
        assert_eq!(*batches.lock().unwrap(), vec![1, 4, 1, 5]);
        // A panic fails that request and the worker goes on.
        let crashed = worker.call(false, vec![13]).await.unwrap_err();
        assert!(crashed.to_string().contains("unlucky"), "{crashed}");
        assert_eq!(worker.call(false, vec![21]).await.unwrap(), vec![42]);
    }
}
