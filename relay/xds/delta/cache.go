package delta

import (
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

// entry is one accepted resource.
type entry struct {
	name string
	// version is the version Istiod gave the resource; it is sent back in
	// initial_resource_versions after a reconnect.
	version string
	// hash and size identify the resource's serialized bytes: equal bytes
	// mean equal content, whatever version or stream they came with.
	hash uint64
	size int
	msg  proto.Message // never mutated once stored
}

// cache holds the last good resources of one type. It survives reconnects:
// upstream going away deletes nothing. It is owned by the goroutine running
// Client.Run.
type cache struct {
	typ    *resourceType
	byName map[string]*entry
}

func newCache(typ *resourceType) *cache {
	return &cache{typ: typ, byName: map[string]*entry{}}
}

// decode checks every resource of resp and returns them as entries, without
// changing the cache. Any invalid resource fails the whole response. A
// resource whose type and bytes equal those held under its name is not
// decoded again: the same bytes passed the same checks before.
func (c *cache) decode(resp *discoveryv3.DeltaDiscoveryResponse) ([]*entry, error) {
	entries := make([]*entry, 0, len(resp.GetResources()))
	seen := make(map[string]struct{}, len(resp.GetResources()))
	for i, r := range resp.GetResources() {
		if _, dup := seen[r.GetName()]; dup {
			return nil, fmt.Errorf("%s %q: duplicate name in response", c.typ.short, r.GetName())
		}
		seen[r.GetName()] = struct{}{}
		val := r.GetResource().GetValue()
		e := &entry{name: r.GetName(), version: r.GetVersion(), hash: xxhash.Sum64(val), size: len(val)}
		if old := c.byName[e.name]; old != nil && old.hash == e.hash && old.size == e.size &&
			r.GetResource() != nil && r.GetResource().GetTypeUrl() == c.typ.url {
			e.msg = old.msg
		} else {
			m, err := decodeResource(c.typ, i, r)
			if err != nil {
				return nil, err
			}
			e.msg = m
		}
		entries = append(entries, e)
	}
	for _, name := range resp.GetRemovedResources() {
		if _, both := seen[name]; both {
			return nil, fmt.Errorf("%s %q: both updated and removed in one response", c.typ.short, name)
		}
	}
	return entries, nil
}

// apply stores entries and deletes removed. It returns the resources whose
// content is new and, sorted, the removed names that were held.
func (c *cache) apply(entries []*entry, removed []string) (upserted map[string]proto.Message, gone []string) {
	upserted = map[string]proto.Message{}
	for _, e := range entries {
		old := c.byName[e.name]
		c.byName[e.name] = e // keeps the newest version even when content is equal
		if old == nil || old.hash != e.hash || old.size != e.size {
			upserted[e.name] = e.msg
		}
	}
	for _, name := range removed {
		if _, ok := c.byName[name]; ok {
			delete(c.byName, name)
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	return upserted, gone
}

// versions returns the version of every held resource, for
// initial_resource_versions; nil when the cache is empty.
func (c *cache) versions() map[string]string {
	if len(c.byName) == 0 {
		return nil
	}
	out := make(map[string]string, len(c.byName))
	for name, e := range c.byName {
		out[name] = e.version
	}
	return out
}

func (c *cache) len() int { return len(c.byName) }
