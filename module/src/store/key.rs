//! A safe handle over Redis's low-level key API (`RedisModule_OpenKey` and friends).
//!
//! redis-module 2.0.8 wraps only part of it, and its writable key does not expose the raw
//! pointer that the stream and zset calls need, so the module keeps its own small wrapper. All the
//! `unsafe` of the module's key access lives in this file.
//!
//! Writes made through a [`Key`] are neither replicated nor announced as keyspace events; the
//! caller does both (see `store::effects`).

use std::ffi::CStr;
use std::os::raw::{c_int, c_long};
use std::ptr::{self, NonNull};

use redis_module::raw::{self, KeyType, RedisModuleKey, RedisModuleStreamID};
use redis_module::{Context, RedisString};

use crate::core::{GyreError, GyreResult};

/// An open key; closed on drop.
pub struct Key {
    ctx: *mut raw::RedisModuleCtx,
    /// Null when a key opened for reading does not exist.
    ptr: *mut RedisModuleKey,
}

/// Why `RedisModule_StreamAdd` refused an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAddError {
    /// The id is not greater than the stream's last id.
    IdTooSmall,
    Other,
}

impl Key {
    /// Opens for reading: a missing (or logically expired) key yields an empty handle.
    pub fn read(ctx: &Context, name: &RedisString) -> Self {
        Self::open(ctx, name, raw::REDISMODULE_READ as c_int)
    }

    /// Opens for writing: a missing key can then be created by the first write.
    pub fn write(ctx: &Context, name: &RedisString) -> Self {
        Self::open(
            ctx,
            name,
            (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int,
        )
    }

    fn open(ctx: &Context, name: &RedisString, mode: c_int) -> Self {
        // SAFETY: the context and the name are valid for the duration of the command.
        let ptr = unsafe { raw::RedisModule_OpenKey.unwrap()(ctx.ctx, name.inner, mode) };
        Self {
            ctx: ctx.ctx,
            ptr: ptr.cast(),
        }
    }

    pub fn kind(&self) -> KeyType {
        if self.ptr.is_null() {
            return KeyType::Empty;
        }
        // SAFETY: non-null key handle owned by self.
        KeyType::from(unsafe { raw::RedisModule_KeyType.unwrap()(self.ptr) })
    }

    /// `Ok(false)` when the key does not exist, `Ok(true)` when it holds `expected`,
    /// `WrongType` otherwise.
    pub fn check(&self, expected: KeyType) -> GyreResult<bool> {
        match self.kind() {
            KeyType::Empty => Ok(false),
            k if k == expected => Ok(true),
            _ => Err(GyreError::WrongType),
        }
    }

    /// Number of fields / members / entries.
    pub fn len(&self) -> usize {
        if self.ptr.is_null() {
            return 0;
        }
        // SAFETY: non-null key handle owned by self.
        unsafe { raw::RedisModule_ValueLength.unwrap()(self.ptr) }
    }

    /// Two hash fields named by C strings, in one lookup.
    pub fn hash_get_pair(&self, a: &CStr, b: &CStr) -> (Option<RedisString>, Option<RedisString>) {
        if self.kind() != KeyType::Hash {
            return (None, None);
        }
        let mut va: *mut raw::RedisModuleString = ptr::null_mut();
        let mut vb: *mut raw::RedisModuleString = ptr::null_mut();
        // SAFETY: CFIELDS takes NUL-terminated names; the list ends with a null pointer.
        unsafe {
            raw::RedisModule_HashGet.unwrap()(
                self.ptr,
                raw::REDISMODULE_HASH_CFIELDS as c_int,
                a.as_ptr(),
                &mut va as *mut *mut raw::RedisModuleString,
                b.as_ptr(),
                &mut vb as *mut *mut raw::RedisModuleString,
                ptr::null::<std::os::raw::c_char>(),
            );
        }
        (self.owned(va), self.owned(vb))
    }

    /// Three hash fields named by C strings, in one lookup.
    pub fn hash_get_triple(
        &self,
        a: &CStr,
        b: &CStr,
        c: &CStr,
    ) -> (
        Option<RedisString>,
        Option<RedisString>,
        Option<RedisString>,
    ) {
        if self.kind() != KeyType::Hash {
            return (None, None, None);
        }
        let mut va: *mut raw::RedisModuleString = ptr::null_mut();
        let mut vb: *mut raw::RedisModuleString = ptr::null_mut();
        let mut vc: *mut raw::RedisModuleString = ptr::null_mut();
        // SAFETY: CFIELDS takes NUL-terminated names; the list ends with a null pointer.
        unsafe {
            raw::RedisModule_HashGet.unwrap()(
                self.ptr,
                raw::REDISMODULE_HASH_CFIELDS as c_int,
                a.as_ptr(),
                &mut va as *mut *mut raw::RedisModuleString,
                b.as_ptr(),
                &mut vb as *mut *mut raw::RedisModuleString,
                c.as_ptr(),
                &mut vc as *mut *mut raw::RedisModuleString,
                ptr::null::<std::os::raw::c_char>(),
            );
        }
        (self.owned(va), self.owned(vb), self.owned(vc))
    }

    /// Sets hash fields (key opened for writing); creates the hash if needed.
    pub fn hash_set(&self, fields: &[(&RedisString, &RedisString)]) {
        for (field, value) in fields {
            // SAFETY: valid strings; the list ends with a null pointer.
            unsafe {
                raw::RedisModule_HashSet.unwrap()(
                    self.ptr,
                    raw::REDISMODULE_HASH_NONE as c_int,
                    field.inner,
                    value.inner,
                    ptr::null::<raw::RedisModuleString>(),
                );
            }
        }
    }

    /// A hash field named by arbitrary bytes (client ids, namespace names).
    pub fn hash_get(&self, field: &RedisString) -> Option<RedisString> {
        if self.kind() != KeyType::Hash {
            return None;
        }
        let mut value: *mut raw::RedisModuleString = ptr::null_mut();
        // SAFETY: field is a valid string; the list ends with a null pointer.
        unsafe {
            raw::RedisModule_HashGet.unwrap()(
                self.ptr,
                raw::REDISMODULE_HASH_NONE as c_int,
                field.inner,
                &mut value as *mut *mut raw::RedisModuleString,
                ptr::null::<raw::RedisModuleString>(),
            );
        }
        self.owned(value)
    }

    /// Absolute expiry in unix ms, `None` without one.
    pub fn expire_at(&self) -> Option<i64> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: non-null key handle owned by self.
        let at = unsafe { raw::RedisModule_GetAbsExpire.unwrap()(self.ptr) };
        (at >= 0).then_some(at)
    }

    /// Sets the absolute expiry of an existing key opened for writing.
    pub fn set_expire_at(&self, unix_ms: i64) {
        // SAFETY: key handle owned by self; Redis checks mode and existence.
        unsafe { raw::RedisModule_SetAbsExpire.unwrap()(self.ptr, unix_ms) };
    }

    /// Removes the expiry of an existing key opened for writing.
    pub fn remove_expire(&self) {
        // SAFETY: key handle owned by self; Redis checks mode and existence.
        unsafe {
            raw::RedisModule_SetAbsExpire.unwrap()(self.ptr, raw::REDISMODULE_NO_EXPIRE as i64)
        };
    }

    /// Deletes the key (opened for writing).
    pub fn delete(&self) {
        // SAFETY: key handle owned by self; Redis checks the mode.
        unsafe { raw::RedisModule_DeleteKey.unwrap()(self.ptr) };
    }

    /// Appends an entry with an explicit id; creates the stream if needed.
    pub fn stream_add(
        &self,
        id: RedisModuleStreamID,
        fields: &[(&RedisString, &RedisString)],
    ) -> Result<(), StreamAddError> {
        let mut argv: Vec<*mut raw::RedisModuleString> = fields
            .iter()
            .flat_map(|(f, v)| [f.inner, v.inner])
            .collect();
        let mut id = id;
        // SAFETY: argv holds 2 * len valid strings that outlive the call.
        let status = unsafe {
            raw::RedisModule_StreamAdd.unwrap()(
                self.ptr,
                0,
                &mut id,
                argv.as_mut_ptr(),
                fields.len() as i64,
            )
        };
        if status == raw::REDISMODULE_OK as c_int {
            Ok(())
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EDOM) {
            Err(StreamAddError::IdTooSmall)
        } else {
            Err(StreamAddError::Other)
        }
    }

    /// Trims to the newest `max_len` entries exactly; returns how many were removed.
    pub fn stream_trim(&self, max_len: u64) -> u64 {
        let max_len = max_len.min(i64::MAX as u64) as i64;
        // SAFETY: key handle owned by self; Redis checks type and mode.
        let removed = unsafe { raw::RedisModule_StreamTrimByLength.unwrap()(self.ptr, 0, max_len) };
        removed.max(0) as u64
    }

    /// Visits entries with ids in `[first-0, last-MAX]`, newest first when `reverse`, until
    /// `visit` returns `false`. `visit` gets the entry id's ms part and the value of field `d`.
    pub fn stream_scan(
        &self,
        first: u64,
        last: u64,
        reverse: bool,
        mut visit: impl FnMut(u64, Option<RedisString>) -> bool,
    ) {
        if self.kind() != KeyType::Stream {
            return;
        }
        let mut start = RedisModuleStreamID { ms: first, seq: 0 };
        let mut end = RedisModuleStreamID {
            ms: last,
            seq: u64::MAX,
        };
        let flags = if reverse {
            raw::REDISMODULE_STREAM_ITERATOR_REVERSE as c_int
        } else {
            0
        };
        // SAFETY: stream key handle owned by self; ids live across the call.
        let started = unsafe {
            raw::RedisModule_StreamIteratorStart.unwrap()(self.ptr, flags, &mut start, &mut end)
        };
        if started != raw::REDISMODULE_OK as c_int {
            return;
        }
        loop {
            let mut id = RedisModuleStreamID { ms: 0, seq: 0 };
            let mut num_fields: c_long = 0;
            // SAFETY: the iterator was started on this key.
            let next = unsafe {
                raw::RedisModule_StreamIteratorNextID.unwrap()(self.ptr, &mut id, &mut num_fields)
            };
            if next != raw::REDISMODULE_OK as c_int {
                break;
            }
            let mut data = None;
            loop {
                let mut field: *mut raw::RedisModuleString = ptr::null_mut();
                let mut value: *mut raw::RedisModuleString = ptr::null_mut();
                // SAFETY: the iterator is positioned on an entry.
                let got = unsafe {
                    raw::RedisModule_StreamIteratorNextField.unwrap()(
                        self.ptr, &mut field, &mut value,
                    )
                };
                if got != raw::REDISMODULE_OK as c_int {
                    break;
                }
                // Freshly allocated by Redis: owned (and freed) by the wrappers.
                let field = self.owned(field);
                let value = self.owned(value);
                if data.is_none() && field.as_ref().is_some_and(|f| f.as_slice() == b"d") {
                    data = value;
                }
            }
            if !visit(id.ms, data) {
                break;
            }
        }
        // SAFETY: stops the iterator started above.
        unsafe { raw::RedisModule_StreamIteratorStop.unwrap()(self.ptr) };
    }

    /// Score of a zset member.
    pub fn zset_score(&self, member: &RedisString) -> Option<f64> {
        if self.kind() != KeyType::ZSet {
            return None;
        }
        let mut score = 0.0;
        // SAFETY: zset key handle owned by self.
        let found =
            unsafe { raw::RedisModule_ZsetScore.unwrap()(self.ptr, member.inner, &mut score) };
        (found == raw::REDISMODULE_OK as c_int).then_some(score)
    }

    /// Visits members with `min < score` (exclusive) up to `max` (inclusive, may be infinite),
    /// in score order.
    pub fn zset_scan_above(
        &self,
        min_exclusive: f64,
        max: f64,
        mut visit: impl FnMut(RedisString, f64),
    ) {
        if self.kind() != KeyType::ZSet {
            return;
        }
        // Each FFI call in its own unsafe block: `visit` is the caller's code and runs outside.
        // SAFETY (all blocks): zset key handle owned by self; the range started here is
        // stopped before returning.
        let started = unsafe {
            raw::RedisModule_ZsetFirstInScoreRange.unwrap()(self.ptr, min_exclusive, max, 1, 0)
        };
        if started != raw::REDISMODULE_OK as c_int {
            return;
        }
        while unsafe { raw::RedisModule_ZsetRangeEndReached.unwrap()(self.ptr) } == 0 {
            let mut score = 0.0;
            let member =
                unsafe { raw::RedisModule_ZsetRangeCurrentElement.unwrap()(self.ptr, &mut score) };
            if let Some(member) = self.owned(member) {
                visit(member, score);
            }
            if unsafe { raw::RedisModule_ZsetRangeNext.unwrap()(self.ptr) } == 0 {
                break;
            }
        }
        unsafe { raw::RedisModule_ZsetRangeStop.unwrap()(self.ptr) };
    }

    /// Members with `score <= max`, in score order.
    pub fn zset_members_up_to(&self, max: f64) -> Vec<RedisString> {
        let mut members = Vec::new();
        self.zset_scan_above(f64::NEG_INFINITY, max, |m, _| members.push(m));
        members
    }

    /// Takes ownership of a string Redis allocated for this call.
    fn owned(&self, s: *mut raw::RedisModuleString) -> Option<RedisString> {
        NonNull::new(s).map(|s| RedisString::from_redis_module_string(self.ctx, s.as_ptr()))
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: the handle was opened by self and is closed exactly once.
            unsafe { raw::RedisModule_CloseKey.unwrap()(self.ptr) };
        }
    }
}

/// `<ms>-<seq>` as a Redis string.
pub fn stream_id(ctx: &Context, id: RedisModuleStreamID) -> RedisString {
    // SAFETY: valid context and id; the new string is owned by the wrapper.
    let s = unsafe { raw::RedisModule_CreateStringFromStreamID.unwrap()(ctx.ctx, &id) };
    RedisString::from_redis_module_string(ctx.ctx, s)
}
