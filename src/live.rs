//! A value a reload replaces whole while requests read it: the policy, the client limits, the
//! upstream lists. Readers take an `Arc` of the value in force and keep it for as long as they
//! need, so a reload never changes what a request under way sees.

use std::sync::{Arc, PoisonError, RwLock};

#[derive(Debug)]
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    pub fn current(&self) -> Arc<T> {
        // Replaced whole, so a panic elsewhere while the lock was held cannot leave half a value.
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}
