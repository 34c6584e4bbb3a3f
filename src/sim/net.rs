//! The simulated network and the queue of everything scheduled: each message
//! sent is lost, delayed, duplicated or blocked by a partition according to
//! the simulation's one generator, then waits in a queue ordered by virtual
//! time (ties by the order of scheduling, so no two runs differ).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::message::Message;
use crate::types::NodeId;

/// Something that happens at a given virtual time.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// A message reaches its receiver.
    Deliver(Message),
    /// A client's proposal reaches a node (the index of the node, the
    /// proposal's id, how many times it was redirected already).
    Propose(usize, u64, u32),
    /// A new client proposal is due.
    NewProposal,
    /// A fault is due: crash, restart, partition or heal.
    Fault,
}

/// How this run's network misbehaves; drawn once per run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Weather {
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) min_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) long_delay: f64,
    pub(crate) long_delay_max: Duration,
}

impl Weather {
    /// A network that loses and duplicates nothing and delays little.
    pub(crate) fn calm(self) -> Self {
        Weather { loss: 0.0, duplicate: 0.0, long_delay: 0.0, ..self }
    }
}

/// What became of a message handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Lost, or blocked by a partition.
    Dropped,
    /// On its way.
    Sent,
    /// On its way twice, each copy with its own delay.
    Duplicated,
}

/// The queue of events and the state of the links.
pub(crate) struct Network {
    queue: BTreeMap<(Duration, u64), Event>,
    seq: u64,
    /// Directed links that lose everything: (from, to).
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub(crate) weather: Weather,
}

impl Network {
    pub(crate) fn new(weather: Weather) -> Self {
        Network { queue: BTreeMap::new(), seq: 0, blocked: BTreeSet::new(), weather }
    }

    /// Schedules `event` at virtual time `at`.
    pub(crate) fn push(&mut self, at: Duration, event: Event) {
        self.queue.insert((at, self.seq), event);
        self.seq += 1;
    }

    /// The time of the earliest event, if any.
    pub(crate) fn next_time(&self) -> Option<Duration> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Takes the earliest event.
    pub(crate) fn pop(&mut self) -> Option<(Duration, Event)> {
        self.queue.pop_first().map(|((t, _), e)| (t, e))
    }

    /// Whether nothing goes from `from` to `to` now.
    pub(crate) fn blocks(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Hands `msg` to the network at time `now`.
    pub(crate) fn send(&mut self, rng: &mut SmallRng, now: Duration, msg: Message) -> Fate {
        if self.blocks(msg.from, msg.to) || rng.random_bool(self.weather.loss) {
            return Fate::Dropped;
        }
        let twice = rng.random_bool(self.weather.duplicate);
        if twice {
            let at = now + self.delay(rng);
            self.push(at, Event::Deliver(msg.clone()));
        }
        let at = now + self.delay(rng);
        self.push(at, Event::Deliver(msg));
        if twice {
            Fate::Duplicated
        } else {
            Fate::Sent
        }
    }

    /// A delay: mostly short and uniform, sometimes long, which reorders.
    fn delay(&self, rng: &mut SmallRng) -> Duration {
        let w = &self.weather;
        if rng.random_bool(w.long_delay) {
            return rng.random_range(w.max_delay..=w.long_delay_max.max(w.max_delay));
        }
        rng.random_range(w.min_delay..=w.max_delay)
    }

    /// Cuts `from → to` only: `to` stops hearing `from`.
    pub(crate) fn block(&mut self, from: NodeId, to: NodeId) {
        if from != to {
            self.blocked.insert((from, to));
        }
    }

    /// Cuts every link between the two groups, both ways.
    pub(crate) fn split(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                self.block(*x, *y);
                self.block(*y, *x);
            }
        }
    }

    /// Restores every link.
    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Restores one cut link, chosen by `rng`, if any.
    pub(crate) fn heal_one(&mut self, rng: &mut SmallRng) -> Option<(NodeId, NodeId)> {
        if self.blocked.is_empty() {
            return None;
        }
        let k = rng.random_range(0..self.blocked.len());
        let link = *self.blocked.iter().nth(k).expect("k is below the length");
        self.blocked.remove(&link);
        Some(link)
    }
}
