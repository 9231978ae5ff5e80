//! Scores: plain structs with named components, so an explanation can show why one node
//! beat another. Higher is better; ties go to the node whose name sorts first. [`Score`]
//! itself crosses the wire, so it lives in `api::explanation`.

use api::explanation::Score;
use serde::{Deserialize, Serialize};

/// How much each preference counts. The defaults put a user's explicit preferences
/// (each -100..100) above the built-in ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Weights {
    /// Binpack: `strategy × mean utilisation after placing` (0..=strategy); spread:
    /// `strategy × mean free share after placing`.
    pub strategy: f64,
    /// Per replica above the least-loaded spread domain (subtracted).
    pub spread: f64,
    /// Per replica of the same service already on the node (subtracted; services only,
    /// so that replicas land on different hosts unless binpacking wins clearly).
    pub colocation: f64,
    /// The most expensive eligible site gets `-cost`, free gets 0.
    pub cost: f64,
    /// The dirtiest eligible site gets `-carbon`, zero-carbon gets 0.
    pub carbon: f64,
    /// Added when the site is the workload's `data.location`.
    pub locality: f64,
    /// Subtracted per untolerated `PreferNoSchedule` taint.
    pub prefer_no_schedule: f64,
    /// Subtracted when work that needs no GPU would sit on a GPU node.
    pub gpu_avoidance: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            strategy: 40.0,
            spread: 10.0,
            colocation: 5.0,
            cost: 20.0,
            carbon: 10.0,
            locality: 25.0,
            prefer_no_schedule: 20.0,
            gpu_avoidance: 15.0,
        }
    }
}

/// The parts of a score that are the same for every node of a class.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct StaticScore {
    pub preferences: f64,
    pub cost: f64,
    pub carbon: f64,
    pub locality: f64,
    pub taints: f64,
    pub gpu_avoidance: f64,
    pub cost_per_hour: Option<f64>,
    pub carbon_grams_per_kwh: Option<f64>,
}

impl StaticScore {
    pub(crate) fn sum(&self) -> f64 {
        self.preferences
            + self.cost
            + self.carbon
            + self.locality
            + self.taints
            + self.gpu_avoidance
    }

    /// The full score with the per-node components (`bonus`: preferences on per-node
    /// attributes such as labels).
    pub(crate) fn with(&self, strategy: f64, bonus: f64, spread: f64, colocation: f64) -> Score {
        let mut s = Score {
            total: 0.0,
            strategy,
            preferences: self.preferences + bonus,
            spread,
            colocation,
            cost: self.cost,
            carbon: self.carbon,
            locality: self.locality,
            taints: self.taints,
            gpu_avoidance: self.gpu_avoidance,
            cost_per_hour: self.cost_per_hour,
            carbon_grams_per_kwh: self.carbon_grams_per_kwh,
        };
        s.total = self.sum() + strategy + bonus + spread + colocation;
        s
    }
}
