//! The bounded work queue and the inference threads behind it. libtorch models are not
//! `Sync`, so each worker thread opens its own copy of the models and owns it for life; the
//! HTTP side only sends it tasks. Admission is decided before a request's body is read: a
//! request takes a permit (one per queue place and per worker) or is answered 503 with a
//! Retry-After estimated from the recent time per case, so uploads waiting in memory are
//! bounded too. The permit travels with the task and is returned when a worker has finished
//! it (or skipped it because its client has gone).
use super::classifier::{Classifier, PhotoResult, SlideResult};
use super::config::{Limits, ServeConfig};
use super::error::ApiError;
use super::model_info::ModelSource;
use super::segmenter::{SegmentResult, Segmenter};
use super::upload::{classifier_photo, Header, Photo};
use anyhow::{Context, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// An uploaded file whose header has been checked; its bytes are decoded on a worker.
pub struct Upload {
    pub name: String,
    pub bytes: axum::body::Bytes,
    pub header: Header,
}

pub enum Task {
    Diagnose {
        slide: String,
        photos: Vec<Upload>,
        heat_maps: bool,
        check_stain: bool,
    },
    Explain {
        photos: Vec<Upload>,
        class: Option<String>,
        check_stain: bool,
    },
    Segment {
        upload: Upload,
        channel: Option<String>,
        min_area: u64,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Answer {
    Slide(SlideResult),
    Photos(Vec<PhotoResult>),
    Segment(Box<SegmentResult>),
}

struct Envelope {
    task: Task,
    reply: oneshot::Sender<Result<Answer, ApiError>>,
    _permit: OwnedSemaphorePermit,
}

/// A place in the queue, held from before the body is read until a worker is done.
pub struct Ticket(OwnedSemaphorePermit);

#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Envelope>,
    permits: Arc<Semaphore>,
    total: usize,
    workers: usize,
    /// Exponential moving average of the time per task, in milliseconds.
    mean_ms: Arc<AtomicU64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueState {
    /// Requests admitted and not finished (waiting or on a worker).
    pub in_progress: usize,
    pub capacity: usize,
    pub workers: usize,
    pub mean_seconds_per_case: f64,
}

/// What the workers found when they opened the models.
pub struct Opened {
    pub queue: Queue,
    pub min_side: u32,
    pub segment_channel: Option<String>,
}

impl Queue {
    /// Starts the workers, each opening the models; returns once all have (or the first
    /// error, so a bad `--model` fails at start-up rather than on the first request).
    pub fn start(config: &ServeConfig) -> Result<Opened> {
        let workers = config.workers.max(1);
        let total = config.limits.queue + workers;
        let (tx, rx) = sync_channel::<Envelope>(total);
        let rx = Arc::new(Mutex::new(rx));
        let mean_ms = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for i in 0..workers {
            let rx = rx.clone();
            let ready = ready_tx.clone();
            let config = config.clone();
            let mean_ms = mean_ms.clone();
            std::thread::Builder::new()
                .name(format!("myoscope-worker-{i}"))
                .spawn(move || {
                    let engine = match Engine::open(&config) {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready.send(Ok((
                        engine.classifier.min_side(),
                        engine
                            .segmenter
                            .as_ref()
                            .map(|s| s.default_channel().to_string()),
                    )));
                    drop(ready);
                    work(&engine, &rx, &mean_ms);
                })
                .context("cannot start a worker thread")?;
        }
        drop(ready_tx);
        let mut opened = None;
        for _ in 0..workers {
            let r = ready_rx
                .recv()
                .context("a worker stopped while opening the models")??;
            opened = Some(r);
        }
        let (min_side, segment_channel) = opened.context("no worker started")?;
        Ok(Opened {
            queue: Queue {
                tx,
                permits: Arc::new(Semaphore::new(total)),
                total,
                workers,
                mean_ms,
            },
            min_side,
            segment_channel,
        })
    }

    /// A place in the queue, or 503 with a Retry-After estimate.
    pub fn admit(&self) -> Result<Ticket, ApiError> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(Ticket(p)),
            Err(_) => Err(ApiError::busy(self.retry_after())),
        }
    }

    /// Hands the task to the workers; the answer arrives on the returned channel.
    pub fn submit(
        &self,
        ticket: Ticket,
        task: Task,
    ) -> Result<oneshot::Receiver<Result<Answer, ApiError>>, ApiError> {
        let (reply, rx) = oneshot::channel();
        let envelope = Envelope {
            task,
            reply,
            _permit: ticket.0,
        };
        match self.tx.try_send(envelope) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(ApiError::busy(self.retry_after())),
            Err(TrySendError::Disconnected(_)) => Err(ApiError::internal(
                "the inference workers have stopped; restart the server",
            )),
        }
    }

    pub fn state(&self) -> QueueState {
        QueueState {
            in_progress: self.total - self.permits.available_permits(),
            capacity: self.total,
            workers: self.workers,
            mean_seconds_per_case: self.mean_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }

    /// Seconds until a place is likely free: the cases ahead times the time per case,
    /// shared among the workers.
    fn retry_after(&self) -> u64 {
        let ahead = (self.total - self.permits.available_permits()) as f64;
        let per_case = self.mean_ms.load(Ordering::Relaxed).max(500) as f64 / 1000.0;
        (ahead * per_case / self.workers as f64).ceil().max(1.0) as u64
    }
}

/// One worker's models.
struct Engine {
    classifier: Classifier,
    segmenter: Option<Segmenter>,
    limits: Limits,
}

impl Engine {
    fn open(config: &ServeConfig) -> Result<Self> {
        let source = ModelSource::resolve(&config.model)?;
        // Each worker thread runs its own models: split the cores between them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / config.workers.max(1)).max(1);
        let classifier = Classifier::open(&source, config.device, config.engine, threads)?;
        let segmenter = match &config.segment_model {
            Some(dir) => Some(Segmenter::open(dir, config.device)?),
            None => None,
        };
        Ok(Self {
            classifier,
            segmenter,
            limits: config.limits.clone(),
        })
    }

    fn photos(&self, uploads: &[Upload], check_stain: bool) -> Result<Vec<Photo>, ApiError> {
        let min_side = self.classifier.min_side();
        uploads
            .iter()
            .map(|u| classifier_photo(&u.name, &u.bytes, &self.limits, min_side, check_stain))
            .collect()
    }

    fn run(&self, task: Task) -> Result<Answer, ApiError> {
        let side = self.limits.picture_side;
        let failed = |e: anyhow::Error| ApiError::internal(format!("{e:#}"));
        match task {
            Task::Diagnose {
                slide,
                photos,
                heat_maps,
                check_stain,
            } => {
                let photos = self.photos(&photos, check_stain)?;
                self.classifier
                    .diagnose(&slide, &photos, heat_maps, side)
                    .map(Answer::Slide)
                    .map_err(failed)
            }
            Task::Explain {
                photos,
                class,
                check_stain,
            } => {
                if let Some(c) = &class {
                    if !self.classifier.classes().contains(c) {
                        return Err(ApiError::bad_request(
                            "unknown_class",
                            format!(
                                "class '{c}' is not one of the model's step-1 classes ({})",
                                self.classifier.classes().join(", ")
                            ),
                        ));
                    }
                }
                let photos = self.photos(&photos, check_stain)?;
                self.classifier
                    .explain(&photos, class.as_deref(), side)
                    .map(Answer::Photos)
                    .map_err(failed)
            }
            Task::Segment {
                upload,
                channel,
                min_area,
            } => {
                let Some(seg) = &self.segmenter else {
                    return Err(no_segmentation_model());
                };
                seg.segment(
                    &upload.name,
                    &upload.bytes,
                    upload.header.format,
                    channel.as_deref(),
                    min_area,
                    &self.limits,
                )
                .map(|r| Answer::Segment(Box::new(r)))
            }
        }
    }
}

pub fn no_segmentation_model() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_IMPLEMENTED,
        "no_segmentation_model",
        "this server has no segmentation model loaded; start it with --segment-model DIR (a run from `myoscope segment train`)",
    )
}

fn work(engine: &Engine, rx: &Mutex<Receiver<Envelope>>, mean_ms: &AtomicU64) {
    loop {
        let envelope = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(e) => e,
                Err(_) => return,
            }
        };
        // The client gave up (timeout or disconnect) while the task waited: skip it.
        if envelope.reply.is_closed() {
            continue;
        }
        let t0 = Instant::now();
        let answer =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.run(envelope.task)))
                .unwrap_or_else(|_| Err(ApiError::internal("the worker failed on this case")));
        let ms = t0.elapsed().as_millis() as u64;
        let old = mean_ms.load(Ordering::Relaxed);
        let new = if old == 0 { ms } else { (old * 4 + ms) / 5 };
        mean_ms.store(new, Ordering::Relaxed);
        let _ = envelope.reply.send(answer);
    }
}
