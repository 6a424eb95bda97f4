//! Campaigns: a template sent to an audience of contacts over one channel account, with a
//! per-recipient ledger (`messages` rows linked to the campaign), pause/resume/cancel,
//! "retry failed only", schedules and send windows.
mod actor;
mod error;
mod listener;
pub mod repo;
mod routes;
mod service;

use chrono::{DateTime, FixedOffset, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

pub use actor::{CampaignRunner, StopCampaigns};
pub use error::CampaignError;
pub use listener::CampaignsListener;
pub use routes::configure;
pub use service::{NewCampaign, create};

/// Who gets the campaign: contacts of these groups and these ids (both empty: every contact).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    /// Group names (`grupo`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Contact ids.
    #[serde(default)]
    pub contact_ids: Vec<String>,
}

/// Hours of the day sends may happen, in a fixed UTC offset (e.g. 09:00–20:00 at +01:00).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWindow {
    /// Opens, `HH:MM`.
    pub start: String,
    /// Closes, `HH:MM` (before `start`: the window spans midnight).
    pub end: String,
    /// Offset of the clock the times are in, in minutes east of UTC.
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

impl SendWindow {
    /// Checks the times and the offset.
    pub fn validate(&self) -> Result<(), String> {
        for t in [&self.start, &self.end] {
            NaiveTime::parse_from_str(t, "%H:%M")
                .map_err(|_| format!("`{t}` is not a time of day as HH:MM"))?;
        }
        if self.start == self.end {
            return Err("start and end must differ".into());
        }
        FixedOffset::east_opt(self.utc_offset_minutes * 60)
            .ok_or_else(|| "utc_offset_minutes must be within ±24 h".to_owned())?;
        Ok(())
    }

    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let (Ok(start), Ok(end), Some(offset)) = (
            NaiveTime::parse_from_str(&self.start, "%H:%M"),
            NaiveTime::parse_from_str(&self.end, "%H:%M"),
            FixedOffset::east_opt(self.utc_offset_minutes * 60),
        ) else {
            return true;
        };
        let t = at.with_timezone(&offset).time();
        if start < end {
            start <= t && t < end
        } else {
            t >= start || t < end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_window_contains() {
        let at = |h: u32, m: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
                .and_then(|d| d.and_hms_opt(h, m, 0))
                .map(|t| t.and_utc())
                .expect("valid")
        };
        let day = SendWindow {
            start: "09:00".into(),
            end: "20:00".into(),
            utc_offset_minutes: 60,
        };
        assert!(day.validate().is_ok());
        assert!(!day.contains(at(7, 59)), "08:59 local");
        assert!(day.contains(at(8, 0)), "09:00 local");
        assert!(!day.contains(at(19, 0)), "20:00 local");
        let night = SendWindow {
            start: "22:00".into(),
            end: "06:00".into(),
            utc_offset_minutes: 0,
        };
        assert!(night.contains(at(23, 0)) && night.contains(at(5, 0)));
        assert!(!night.contains(at(12, 0)));
        assert!(
            SendWindow {
                start: "25:00".into(),
                ..night
            }
            .validate()
            .is_err()
        );
    }
}
