package istiodsim

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// encodedResponse is a DiscoveryResponse encoded ahead of time: body is
// shared by every stream it is sent to (read-only), and nonce is appended as
// field 5 of the message when it is written, so a stream's send costs no
// marshalling. Protobuf allows fields in any order.
type encodedResponse struct {
	body  []byte
	nonce string
}

// discoveryResponseNonce is the field number of DiscoveryResponse.nonce.
const discoveryResponseNonce = 5

func (r *encodedResponse) size() int { return len(r.body) + len(r.tail()) }

func (r *encodedResponse) tail() []byte {
	b := protowire.AppendTag(nil, discoveryResponseNonce, protowire.BytesType)
	return protowire.AppendString(b, r.nonce)
}

// codec is the Sim's server codec: gRPC's proto codec, except that an
// *encodedResponse is written as its bytes. Unlike grpc.PreparedMsg, such a
// message is not bound to one stream.
type codec struct{ proto encoding.CodecV2 }

func newCodec() (codec, error) {
	c := encoding.GetCodecV2("proto")
	if c == nil {
		return codec{}, fmt.Errorf("grpc proto codec not registered")
	}
	return codec{proto: c}, nil
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*encodedResponse); ok {
		// SliceBuffers are not pooled: gRPC's Free of them is a no-op, so the
		// shared body is never recycled under another stream.
		return mem.BufferSlice{mem.SliceBuffer(r.body), mem.SliceBuffer(r.tail())}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return c.proto.Name() }
