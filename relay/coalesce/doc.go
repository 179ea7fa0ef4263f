// Package coalesce is the relay's dirty set: producers Mark keys that
// changed, one consumer takes them in batches with Next.
//
// The set holds keys, not values. Latest-wins lives in the caller, which
// keeps the newest desired value per key and reads it when it processes the
// batch; marking a key a million times still holds one entry, so memory is
// bounded by the number of distinct keys.
//
// Next returns once changes have settled (no Mark for Window) or have waited
// long enough (MaxDelay since the oldest pending Mark), whichever comes
// first: the relay turns a burst of upstream pushes into one write per key
// while bounding the added latency.
//
// relay/etcdsink imports it. It imports nothing of meshrelay's.
package coalesce
