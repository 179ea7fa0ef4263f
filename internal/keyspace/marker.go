package keyspace

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Marker is the JSON value of synced/<shard> (docs/contract.md). A shard's
// leader writes it once every service of the shard in a complete upstream
// state is in etcd; a reader trusts the absence of a service of that shard
// only when the marker's Generation is the current generation.
type Marker struct {
	// Shard is the shard this marker is for; it matches the key.
	Shard int `json:"shard"`
	// Shards is the shard total the writer partitioned services with.
	Shards int `json:"shards"`
	// Cluster is the cluster id of the keyspace.
	Cluster string `json:"cluster"`
	// Generation is the generation id etcd held when the shard was synced.
	Generation string `json:"generation"`
	// Relay is the id of the relay that wrote the marker.
	Relay string `json:"relay"`
	// Services is the number of services of the shard in etcd.
	Services int `json:"services"`
	// Time is when the marker was written, RFC 3339 UTC.
	Time string `json:"time"`
	// HeldDeletions is true when the writer holds back deletions from the
	// latest complete state (too large a share to delete at once): etcd
	// may still hold services upstream no longer has.
	HeldDeletions bool `json:"held_deletions"`
}

// SameAs compares everything but Time: a marker that would differ from the
// one in etcd only by its time need not be rewritten.
func (m Marker) SameAs(o Marker) bool {
	m.Time = o.Time
	return m == o
}

// Validate checks the fields a reader relies on.
func (m Marker) Validate() error {
	switch {
	case m.Generation == "":
		return errors.New("no generation")
	case m.Shard < 0 || m.Shard >= MaxShards:
		return fmt.Errorf("shard %d: want 0..%d", m.Shard, MaxShards-1)
	case m.Shards < 0 || m.Shards > MaxShards:
		return fmt.Errorf("shards %d: want 1..%d", m.Shards, MaxShards)
	case m.Shards > 0 && m.Shard >= m.Shards:
		return fmt.Errorf("shard %d of %d", m.Shard, m.Shards)
	case m.Services < 0:
		return fmt.Errorf("services %d", m.Services)
	}
	return nil
}

// EncodeMarker returns the JSON value of m.
func EncodeMarker(m Marker) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode synced marker: %w", err)
	}
	return json.Marshal(m)
}

// ParseMarker decodes a synced/<shard> value. A value that is not JSON,
// or lacks a generation, is an error: a reader must not treat it as a
// synced shard. Unknown fields are accepted (a newer writer may add some);
// Shards, Cluster and HeldDeletions are zero when an older writer left
// them out.
func ParseMarker(value []byte) (Marker, error) {
	var m Marker
	if err := json.Unmarshal(value, &m); err != nil {
		return Marker{}, fmt.Errorf("decode synced marker: %w", err)
	}
	if err := m.Validate(); err != nil {
		return Marker{}, fmt.Errorf("decode synced marker: %w", err)
	}
	return m, nil
}

// MarkerTime formats t as Marker.Time.
func MarkerTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
