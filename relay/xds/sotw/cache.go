package sotw

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
	// hash and size identify the resource's serialized bytes: equal bytes
	// mean equal content, whatever version or stream they came with.
	hash uint64
	size int
	msg  proto.Message // never mutated once stored
	refs []string      // names of dependent resources (see resourceType.references)
}

// contentKey identifies a serialized resource by its bytes.
type contentKey struct {
	hash uint64
	size int
}

// cache holds the last good resources of one type. It survives reconnects:
// upstream going away deletes nothing. It is owned by the goroutine running
// Client.Run.
type cache struct {
	typ       *resourceType
	byName    map[string]*entry
	byContent map[contentKey]*entry
}

func newCache(typ *resourceType) *cache {
	return &cache{typ: typ, byName: map[string]*entry{}, byContent: map[contentKey]*entry{}}
}

// decode checks every resource of resp and returns them as entries, without
// changing the cache. Any invalid resource fails the whole response.
//
// A resource whose bytes equal those of a resource already held is not
// decoded again: identical bytes passed the same checks before. An identical
// re-push of a large state therefore costs one hash per resource.
func (c *cache) decode(resp *discoveryv3.DiscoveryResponse) ([]*entry, error) {
	entries := make([]*entry, 0, len(resp.GetResources()))
	seen := make(nameSet, len(resp.GetResources()))
	for i, a := range resp.GetResources() {
		if a.GetTypeUrl() != c.typ.url {
			// Checked even for known bytes: the same bytes under another
			// type URL are a different (wrong) resource.
			return nil, fmt.Errorf("%s resource %d: type_url %q does not match the response type", c.typ.short, i, a.GetTypeUrl())
		}
		key := contentKey{hash: xxhash.Sum64(a.GetValue()), size: len(a.GetValue())}
		e := c.byContent[key]
		if e == nil {
			m, name, err := decodeResource(c.typ, i, a)
			if err != nil {
				return nil, err
			}
			e = &entry{name: name, hash: key.hash, size: key.size, msg: m}
			if c.typ.references != nil {
				if e.refs, err = c.typ.references(m); err != nil {
					return nil, fmt.Errorf("%s %q: %w", c.typ.short, name, err)
				}
			}
		}
		if seen.has(e.name) {
			return nil, fmt.Errorf("%s %q: duplicate name in response", c.typ.short, e.name)
		}
		seen.add(e.name)
		entries = append(entries, e)
	}
	return entries, nil
}

// put stores e and reports whether its content is new under its name.
func (c *cache) put(e *entry) bool {
	old := c.byName[e.name]
	if old == e || (old != nil && old.hash == e.hash && old.size == e.size) {
		return false
	}
	if old != nil {
		c.forget(old)
	}
	c.byName[e.name] = e
	c.byContent[contentKey{e.hash, e.size}] = e
	return true
}

// forget removes e from the content index (not from byName).
func (c *cache) forget(e *entry) {
	key := contentKey{e.hash, e.size}
	if c.byContent[key] == e {
		delete(c.byContent, key)
	}
}

// replaceAll makes entries the whole state (full-state types). It returns the
// resources whose content is new and the names that disappeared, sorted.
func (c *cache) replaceAll(entries []*entry) (upserted map[string]proto.Message, removed []string) {
	keep := make(nameSet, len(entries))
	for _, e := range entries {
		keep.add(e.name)
	}
	for name, e := range c.byName {
		if !keep.has(name) {
			c.forget(e)
			delete(c.byName, name)
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	return c.merge(entries, nil), removed
}

// merge stores entries over the current state (partial pushes) and returns
// those whose content is new. When subscribed is not nil, entries it does
// not contain are ignored: they were unsubscribed before Istiod saw it.
func (c *cache) merge(entries []*entry, subscribed *subscription) map[string]proto.Message {
	upserted := map[string]proto.Message{}
	for _, e := range entries {
		if subscribed != nil && !subscribed.has(e.name) {
			continue
		}
		if c.put(e) {
			upserted[e.name] = e.msg
		}
	}
	return upserted
}

// drop deletes the named resources and returns, sorted, those it held.
func (c *cache) drop(names []string) []string {
	var removed []string
	for _, name := range names {
		if e, ok := c.byName[name]; ok {
			c.forget(e)
			delete(c.byName, name)
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	return removed
}

// references returns the dependent names all held resources refer to.
func (c *cache) references() nameSet {
	return c.referencesOf(func(*entry) bool { return true })
}

// referencesOf returns the dependent names of the held resources keep
// accepts.
func (c *cache) referencesOf(keep func(*entry) bool) nameSet {
	refs := nameSet{}
	for _, e := range c.byName {
		if !keep(e) {
			continue
		}
		for _, r := range e.refs {
			refs.add(r)
		}
	}
	return refs
}

func (c *cache) len() int { return len(c.byName) }
