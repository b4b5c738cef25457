//! [`LargeBatches`]: a container builder that ships records in batches of `N`, for exchanges
//! of large records.
//!
//! timely's default builder (`CapacityContainerBuilder`) cuts a stream into batches of 8 KB:
//! about 16 complaints (~0.5 KB each). Through an exchange between workers every batch is a
//! message on a channel (and often a wake-up of the other thread), so `dedup_by_id`'s
//! exchange by id paid that cost once per 16 records. Batches of 1,024 pay it once per
//! 1,024; the exchange still flushes whatever it holds at the end of each activation, so
//! nothing waits for a batch to fill.
//!
//! ```
//! use complaintflow_operators::batches::LargeBatches;
//! use timely::container::{ContainerBuilder, PushInto};
//! let mut b: LargeBatches<u64, 3> = LargeBatches::default();
//! for i in 0..4 {
//!     b.push_into(i);
//! }
//! assert_eq!(b.extract().cloned(), Some(vec![0, 1, 2])); // full batches leave first
//! assert_eq!(b.extract(), None);
//! assert_eq!(b.finish().cloned(), Some(vec![3])); // then the rest
//! assert_eq!(b.finish(), None);
//! ```

use std::collections::VecDeque;

use timely::container::{ContainerBuilder, LengthPreservingContainerBuilder, PushInto};

/// Builds `Vec<T>` batches of `N` records, in order (see the [module docs](self)).
#[derive(Debug)]
pub struct LargeBatches<T, const N: usize> {
    current: Vec<T>,
    /// An emptied batch handed back by the channel, reused for the next one.
    empty: Option<Vec<T>>,
    pending: VecDeque<Vec<T>>,
}

impl<T, const N: usize> Default for LargeBatches<T, N> {
    fn default() -> Self {
        LargeBatches {
            current: Vec::new(),
            empty: None,
            pending: VecDeque::new(),
        }
    }
}

impl<T, const N: usize> PushInto<T> for LargeBatches<T, N> {
    #[inline]
    fn push_into(&mut self, item: T) {
        if self.current.capacity() == 0 {
            self.current = self.empty.take().unwrap_or_default();
            self.current.clear();
            self.current.reserve(N);
        }
        self.current.push(item);
        if self.current.len() >= N {
            self.pending.push_back(std::mem::take(&mut self.current));
        }
    }
}

impl<T: Clone + 'static, const N: usize> ContainerBuilder for LargeBatches<T, N> {
    type Container = Vec<T>;

    #[inline]
    fn extract(&mut self) -> Option<&mut Vec<T>> {
        let full = self.pending.pop_front()?;
        self.empty = Some(full);
        self.empty.as_mut()
    }

    #[inline]
    fn finish(&mut self) -> Option<&mut Vec<T>> {
        if !self.current.is_empty() {
            self.pending.push_back(std::mem::take(&mut self.current));
        }
        self.empty = self.pending.pop_front();
        self.empty.as_mut()
    }
}

impl<T: Clone + 'static, const N: usize> LengthPreservingContainerBuilder for LargeBatches<T, N> {}
