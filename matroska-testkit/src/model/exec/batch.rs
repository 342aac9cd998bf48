//! The batch operations of the model-based checker: each answer of `get_many` is checked as a
//! `get` over the span of the whole call, and each entry of `put_many` as a `put` or a fill.

use matroska_core::Key;
use matroska_core::store::{Lookup, PutEntry, PutOutcome, Store};

use super::{Case, KEEP, bump, key_of, tags_of};
use crate::Harness;
use crate::model::op::{KEYS, Life};
use crate::model::reference::{FillRule, Token};

/// The keys of a bit mask, in order.
fn keys_in(mask: u8) -> Vec<u8> {
    (0..KEYS).filter(|k| mask & (1 << k) != 0).collect()
}

impl<H: Harness> Case<'_, H> {
    pub(super) async fn get_many(&mut self, on: u8, mask: u8) -> Result<(), String> {
        let ks = keys_in(mask);
        let keys: Vec<Key> = ks.iter().map(|&k| key_of(k)).collect();
        let lo = self.timing.now();
        let lookups = self.stores[usize::from(on)]
            .get_many(&keys)
            .await
            .map_err(|e| format!("get_many failed: {e}"))?;
        let span = self.span(lo);
        if lookups.len() != ks.len() {
            return Err(format!(
                "get_many of {} keys gave {} answers",
                ks.len(),
                lookups.len()
            ));
        }
        for (k, lookup) in ks.into_iter().zip(lookups) {
            match lookup {
                Lookup::Hit(bytes) => {
                    let v = self.envelope.decode(bytes).await?;
                    self.check_read(k, Some(v), span)?;
                }
                Lookup::Miss(fill) => {
                    self.check_read(k, None, span)?;
                    if self.tokens.len() == KEEP {
                        self.tokens.remove(0);
                    }
                    self.tokens.push(Token {
                        key: k,
                        fill,
                        at: self.step,
                        span,
                    });
                }
            }
        }
        Ok(())
    }

    pub(super) async fn put_many(
        &mut self,
        on: u8,
        mask: u8,
        tags: u8,
        life: Life,
    ) -> Result<(), String> {
        let ks = keys_in(mask);
        let keys: Vec<Key> = ks.iter().map(|&k| key_of(k)).collect();
        let mut values = Vec::new();
        let mut encoded = Vec::new();
        for _ in &ks {
            let value = self.model.fresh_value();
            encoded.push(self.envelope.encode(value).await?);
            values.push(value);
        }
        let ttl = self.timing.ttl(life);
        let tag_list = tags_of(tags);
        let entries: Vec<PutEntry<'_>> = keys
            .iter()
            .zip(&encoded)
            .map(|(key, bytes)| PutEntry {
                tags: &tag_list,
                ttl,
                ..PutEntry::new(key, bytes.clone())
            })
            .collect();
        let lo = self.timing.now();
        let outcomes = self.stores[usize::from(on)]
            .put_many(&entries)
            .await
            .map_err(|e| format!("put_many failed: {e}"))?;
        let span = self.span(lo);
        if outcomes.len() != ks.len() || outcomes.iter().any(|o| *o != PutOutcome::Stored) {
            return Err(format!("put_many without tokens answered {outcomes:?}"));
        }
        for (k, value) in ks.into_iter().zip(values) {
            self.model.store(k, value, tags, ttl, span, self.step);
        }
        Ok(())
    }

    pub(super) async fn fill_many(
        &mut self,
        on: u8,
        picks: (u8, u8),
        tags: (u8, u8),
        life: Life,
    ) -> Result<(), String> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let n = self.tokens.len();
        let first = self.tokens[usize::from(picks.0) % n].clone();
        let second = self.tokens[usize::from(picks.1) % n].clone();
        let mut chosen = vec![(first, tags.0)];
        if second.key != chosen[0].0.key {
            chosen.push((second, tags.1));
        }
        let ttl = self.timing.ttl(life);
        let keys: Vec<Key> = chosen.iter().map(|(t, _)| key_of(t.key)).collect();
        let tag_lists: Vec<_> = chosen.iter().map(|(_, tags)| tags_of(*tags)).collect();
        let mut values = Vec::new();
        let mut encoded = Vec::new();
        for _ in &chosen {
            let value = self.model.fresh_value();
            encoded.push(self.envelope.encode(value).await?);
            values.push(value);
        }
        let entries: Vec<PutEntry<'_>> = chosen
            .iter()
            .enumerate()
            .map(|(i, (token, _))| PutEntry {
                tags: &tag_lists[i],
                ttl,
                token: Some(&token.fill),
                ..PutEntry::new(&keys[i], encoded[i].clone())
            })
            .collect();
        let lo = self.timing.now();
        let outcomes = self.stores[usize::from(on)]
            .put_many(&entries)
            .await
            .map_err(|e| format!("put_many (fills) failed: {e}"))?;
        let span = self.span(lo);
        if outcomes.len() != chosen.len() {
            return Err(format!(
                "put_many of {} fills answered {outcomes:?}",
                chosen.len()
            ));
        }
        // Every rule first, against the model as it was before the batch.
        let rules: Vec<FillRule> = chosen
            .iter()
            .map(|(token, tags)| self.model.fill_rule(token, *tags, span))
            .collect();
        for ((((token, tags), rule), outcome), value) in
            chosen.iter().zip(&rules).zip(outcomes).zip(values)
        {
            let stored = outcome == PutOutcome::Stored;
            match (rule, stored) {
                (FillRule::Refuse(_), false) => bump(&self.stats.fills_refused),
                (_, true) => bump(&self.stats.fills_stored),
                _ => {}
            }
            let what = format!("batch fill (token of op #{})", token.at);
            self.check_fill(&what, rule, stored, token.key, value, *tags, ttl, span)?;
        }
        Ok(())
    }
}
