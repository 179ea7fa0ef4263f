package delta

import "github.com/meshrelay/meshrelay/relay/xds/sotw"

// Update is what one accepted response (or the sync timeout) changed. It is
// sotw.Update, so that the relay feeds both clients to the same pipeline;
// for this client:
//
//   - TypeURL is AddressType or AuthorizationType; it is empty for an update
//     that only reports completeness reached by Options.SyncTimeout.
//   - Upserted holds *workloadapi.Address or *security.Authorization by
//     resource name (shared with the cache: never mutate them).
//   - Removed lists, sorted, the held names Istiod removed.
//   - Complete: see the package documentation.
type Update = sotw.Update

// Handler consumes Updates, sequentially from the goroutine running
// Client.Run; it must not block for long. It is sotw.Handler.
type Handler = sotw.Handler

// HandlerFunc adapts a function to a Handler.
type HandlerFunc = sotw.HandlerFunc
