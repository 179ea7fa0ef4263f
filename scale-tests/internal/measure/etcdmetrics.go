package measure

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// EtcdMetrics are the figures the report takes from etcd's /metrics (served
// on its client URL).
type EtcdMetrics struct {
	// DBSize is the backend's physically allocated size
	// (etcd_mvcc_db_total_size_in_bytes); DBInUse the part in use.
	DBSize  float64 `json:"dbSize"`
	DBInUse float64 `json:"dbInUse"`
	// Watchers and WatchStreams are etcd_debugging_mvcc_watcher_total and
	// etcd_debugging_mvcc_watch_stream_total; SlowWatchers counts watchers
	// that fell behind.
	Watchers     float64 `json:"watchers"`
	WatchStreams float64 `json:"watchStreams"`
	SlowWatchers float64 `json:"slowWatchers"`
	// Keys is etcd_debugging_mvcc_keys_total.
	Keys float64 `json:"keys"`
	// SentBytes and ReceivedBytes are the gRPC bytes etcd sent to and
	// received from its clients.
	SentBytes     float64 `json:"sentBytes"`
	ReceivedBytes float64 `json:"receivedBytes"`
}

var etcdMetricNames = map[string]func(*EtcdMetrics) *float64{
	"etcd_mvcc_db_total_size_in_bytes":              func(m *EtcdMetrics) *float64 { return &m.DBSize },
	"etcd_mvcc_db_total_size_in_use_in_bytes":       func(m *EtcdMetrics) *float64 { return &m.DBInUse },
	"etcd_debugging_mvcc_watcher_total":             func(m *EtcdMetrics) *float64 { return &m.Watchers },
	"etcd_debugging_mvcc_watch_stream_total":        func(m *EtcdMetrics) *float64 { return &m.WatchStreams },
	"etcd_debugging_mvcc_slow_watcher_total":        func(m *EtcdMetrics) *float64 { return &m.SlowWatchers },
	"etcd_debugging_mvcc_keys_total":                func(m *EtcdMetrics) *float64 { return &m.Keys },
	"etcd_network_client_grpc_sent_bytes_total":     func(m *EtcdMetrics) *float64 { return &m.SentBytes },
	"etcd_network_client_grpc_received_bytes_total": func(m *EtcdMetrics) *float64 { return &m.ReceivedBytes },
}

// ScrapeEtcd reads etcd's /metrics at clientURL.
func ScrapeEtcd(ctx context.Context, clientURL string) (EtcdMetrics, error) {
	var m EtcdMetrics
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(clientURL, "/")+"/metrics", nil)
	if err != nil {
		return m, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, fmt.Errorf("etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("etcd metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, value := f[0], f[1]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		field, ok := etcdMetricNames[name]
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		*field(&m) += v // labelled series (e.g. per type) add up
	}
	return m, sc.Err()
}
