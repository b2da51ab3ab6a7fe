//! How many downloads stream at once: in all (each holds a worker thread while the
//! engine writes the archive) and per user, so that one user cannot take every slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The download slots, shared by every request.
#[derive(Debug)]
pub struct DownloadLimits {
    max_total: usize,
    max_per_user: usize,
    /// Downloads streaming now: in all, and by user name.
    active: Mutex<(usize, HashMap<String, usize>)>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// Every slot is taken.
    Total(usize),
    /// The user has as many downloads streaming as one user may.
    PerUser(usize),
}

/// A slot, held while a download streams; given back when dropped.
#[derive(Debug)]
pub struct DownloadSlot {
    limits: Arc<DownloadLimits>,
    user: String,
}

impl DownloadLimits {
    #[must_use]
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        Self {
            max_total: max_total.max(1),
            max_per_user: max_per_user.max(1),
            active: Mutex::new((0, HashMap::new())),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<String, usize>)> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for `user`, if one is free.
    ///
    /// # Errors
    /// [`NoSlot`] naming the limit that is reached.
    pub fn try_acquire(self: &Arc<Self>, user: &str) -> Result<DownloadSlot, NoSlot> {
        let mut active = self.active();
        if active.0 >= self.max_total {
            return Err(NoSlot::Total(self.max_total));
        }
        let mine = active.1.entry(user.to_owned()).or_default();
        if *mine >= self.max_per_user {
            return Err(NoSlot::PerUser(self.max_per_user));
        }
        *mine += 1;
        active.0 += 1;
        Ok(DownloadSlot {
            limits: Arc::clone(self),
            user: user.to_owned(),
        })
    }
}

impl Default for DownloadLimits {
    fn default() -> Self {
        Self::new(8, 2)
    }
}

impl Drop for DownloadSlot {
    fn drop(&mut self) {
        let mut active = self.limits.active();
        active.0 = active.0.saturating_sub(1);
        if let Some(mine) = active.1.get_mut(&self.user) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                active.1.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_in_all_and_per_user_and_come_back() {
        let limits = Arc::new(DownloadLimits::new(3, 2));
        let a1 = limits.try_acquire("ann").unwrap();
        let _a2 = limits.try_acquire("ann").unwrap();
        assert_eq!(limits.try_acquire("ann").unwrap_err(), NoSlot::PerUser(2));
        let _b1 = limits.try_acquire("bob").unwrap();
        assert_eq!(limits.try_acquire("cyd").unwrap_err(), NoSlot::Total(3));
        drop(a1);
        let _a3 = limits.try_acquire("ann").unwrap();
    }
}
