// Package coalesce is the relay's dirty set: producers Mark keys that
// changed, one consumer takes them in batches with Next.
//
// The set holds keys, not values. Latest-wins lives in the caller, which
// keeps the newest desired value per key and reads it when it processes the
// batch; marking a key a million times still holds one entry, so memory is
// bounded by the number of distinct keys.
//
// A key marked after a quiet period is released at once (the leading
// edge), after a packing delay of a few milliseconds so that keys marked
// together go out in one batch. A key marked again within Window of its
// release waits for the end of that Window (the trailing edge), where all
// its marks meanwhile are one. So a lone change is not delayed, and a storm
// still releases each key at most once per Window; MaxDelay bounds any
// wait.
//
// relay/etcdsink imports it. It imports nothing of meshrelay's.
package coalesce
