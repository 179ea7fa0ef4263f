package etcddial

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"
)

// ReadEndpointsFile reads a file of etcd endpoints separated by commas or
// white space (the chart's endpoints ConfigMap holds one comma-separated
// line). A file without an endpoint is an error: unknown is never empty.
func ReadEndpointsFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read etcd endpoints file: %w", err)
	}
	eps := strings.FieldsFunc(string(b), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r' })
	if len(eps) == 0 {
		return nil, fmt.Errorf("etcd endpoints file %s: no endpoint", path)
	}
	return eps, nil
}

// EndpointSetter is the part of *clientv3.Client that FollowEndpointsFile
// needs.
type EndpointSetter interface {
	SetEndpoints(eps ...string)
}

// FollowEndpointsFile reads path every interval and, when its endpoints
// change, gives them to c, until ctx ends. current is what c dials now. A
// file that cannot be read, is empty, or (with secure) names a plaintext
// endpoint, keeps the endpoints c has, with a warning.
func FollowEndpointsFile(ctx context.Context, c EndpointSetter, path string, current []string, secure bool, interval time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	current = slices.Clone(current)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		eps, err := ReadEndpointsFile(path)
		if err == nil && secure {
			err = CheckSecure(eps)
		}
		if err != nil {
			log.Warn("etcd endpoints file: keeping the current endpoints", "err", err, "endpoints", current)
			continue
		}
		if slices.Equal(eps, current) {
			continue
		}
		log.Info("etcd endpoints changed", "from", current, "to", eps)
		c.SetEndpoints(eps...)
		current = eps
	}
}
