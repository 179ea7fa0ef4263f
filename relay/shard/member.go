package shard

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Member is the JSON value of relays/<relay-id>, kept on the replica's
// lease: it disappears when the replica stops renewing it.
type Member struct {
	// ID is the relay id; it equals the key's <relay-id>.
	ID string `json:"id"`
	// Pod is the pod (or host) the replica runs in.
	Pod string `json:"pod"`
	// Version is the relay's build version.
	Version string `json:"version"`
	// Shards are the shards the replica leads, ascending.
	Shards []int `json:"shards"`
	// Ready is true while the replica's upstream is healthy and synced:
	// only ready replicas campaign, and only they count when shards are
	// divided.
	Ready bool `json:"ready"`
	// Lease is the replica's etcd lease id, hex.
	Lease string `json:"lease"`
}

// EncodeMember returns the JSON value of m.
func EncodeMember(m Member) ([]byte, error) {
	if m.ID == "" {
		return nil, errors.New("encode member: no id")
	}
	return json.Marshal(m)
}

// ParseMember decodes a relays/<relay-id> value. Unknown fields are
// accepted.
func ParseMember(value []byte) (Member, error) {
	var m Member
	if err := json.Unmarshal(value, &m); err != nil {
		return Member{}, fmt.Errorf("decode member: %w", err)
	}
	if m.ID == "" {
		return Member{}, errors.New("decode member: no id")
	}
	return m, nil
}
