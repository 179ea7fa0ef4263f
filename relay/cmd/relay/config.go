package main

import (
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/shard"
)

// config is the relay command's configuration, bound to its flags; the
// environment and the --config file are overlaid onto the flags not set on
// the command line (cliconfig.Overlay). docs/contract.md lists the flags.
type config struct {
	File cliconfig.ConfigFile
	Etcd cliconfig.Etcd
	Log  cliconfig.Log

	Istiod        string
	Mode          string
	Shards        int
	LeaseTTL      time.Duration
	MetricsListen string
	RelayID       string
	NodeID        string
	NodeMetadata  map[string]string

	IstiodCA, IstiodCert, IstiodKey, IstiodServerName string

	SyncTimeout    time.Duration
	MaxRecvMsgSize int

	CoalesceWindow, CoalesceMaxDelay            time.Duration
	EtcdOpsPerSecond, EtcdBootstrapOpsPerSecond float64

	EtcdListen, EtcdDataDir string
}

// Upstream API modes (--mode).
const (
	modeSotW     = "sotw"
	modeWorkload = "workload"
)

// Bind adds the relay's flags to fs, bound to c.
func (c *config) Bind(fs *pflag.FlagSet) {
	c.File.Bind(fs)
	c.Etcd.Bind(fs, "etcd endpoints (comma-separated); empty starts an embedded in-memory etcd")
	c.Log.Bind(fs)
	fs.StringVar(&c.Istiod, "istiod", "127.0.0.1:15010", "Istiod xDS address (host:port); 15010 is plaintext, 15012 needs --istiod-ca")
	fs.StringVar(&c.Mode, "mode", modeSotW, "upstream API: sotw (CDS/EDS/LDS/RDS); workload (ambient, delta) is not available yet")
	fs.IntVar(&c.Shards, "shards", keyspace.DefaultShards, "number of keyspace shards")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", shard.DefaultLeaseTTL, "TTL of this replica's etcd lease (whole seconds, >= 1s): its shards are taken over this long after it dies")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "127.0.0.1:9464", "address of /metrics, /healthz, /readyz and /debug/pprof/ (empty disables)")
	fs.StringVar(&c.RelayID, "relay-id", "", "this replica's id: relays/<relay-id>, its election keys' value, synced/ markers (default $POD_NAME, else the host name); unique per replica")
	fs.StringVar(&c.NodeID, "node-id", "", "xDS node id (default sidecar~$POD_IP~$POD_NAME.$POD_NAMESPACE~$POD_NAMESPACE.svc.cluster.local)")
	fs.StringToStringVar(&c.NodeMetadata, "node-metadata", nil, "extra xDS node metadata, key=value,... (e.g. ISTIO_VERSION=1.28.0)")
	fs.StringVar(&c.IstiodCA, "istiod-ca", "", "Istiod TLS: CA file (enables TLS)")
	fs.StringVar(&c.IstiodCert, "istiod-cert", "", "Istiod TLS: client certificate file")
	fs.StringVar(&c.IstiodKey, "istiod-key", "", "Istiod TLS: client key file")
	fs.StringVar(&c.IstiodServerName, "istiod-server-name", "", "Istiod TLS: server name to verify (default: the host of --istiod)")
	fs.DurationVar(&c.SyncTimeout, "sync-timeout", 5*time.Second, "how long to wait for named EDS/RDS resources before the upstream state counts as complete")
	fs.IntVar(&c.MaxRecvMsgSize, "max-recv-msg-size", 256<<20, "largest xDS message accepted from Istiod, bytes")
	fs.DurationVar(&c.CoalesceWindow, "coalesce-window", 100*time.Millisecond, "quiet time that ends a burst of changes before it is written")
	fs.DurationVar(&c.CoalesceMaxDelay, "coalesce-max-delay", time.Second, "longest a change waits in a burst before it is written")
	fs.Float64Var(&c.EtcdOpsPerSecond, "etcd-ops-per-second", etcdsink.DefaultOpsPerSecond, "etcd write rate limit after the first complete sync (operations/s)")
	fs.Float64Var(&c.EtcdBootstrapOpsPerSecond, "etcd-bootstrap-ops-per-second", etcdsink.DefaultBootstrapOpsPerSecond, "etcd write rate limit until the first complete sync (operations/s)")
	fs.StringVar(&c.EtcdListen, "etcd-listen", "127.0.0.1:0", "embedded etcd only: client address (loopback; port 0 picks a free one)")
	fs.StringVar(&c.EtcdDataDir, "etcd-data-dir", "", "embedded etcd only: data directory (default a temporary in-memory directory)")
}

// Validate checks every value; the error names the flag (exit status 2).
func (c *config) Validate() error {
	if err := c.Log.Validate(); err != nil {
		return err
	}
	if err := cliconfig.OneOf("mode", c.Mode, modeSotW, modeWorkload); err != nil {
		return err
	}
	if c.Shards < 1 || c.Shards > keyspace.MaxShards {
		return cliconfig.Invalid("shards", c.Shards, "want 1..4096")
	}
	if c.LeaseTTL < shard.MinLeaseTTL {
		return cliconfig.Invalid("lease-ttl", c.LeaseTTL, "want >= 1s")
	}
	if _, _, err := net.SplitHostPort(c.Istiod); err != nil {
		return cliconfig.Invalid("istiod", c.Istiod, "want host:port")
	}
	if err := c.Etcd.Validate(); err != nil {
		return err
	}
	if c.CoalesceWindow <= 0 || c.CoalesceMaxDelay < c.CoalesceWindow {
		return cliconfig.Invalid("coalesce-max-delay", c.CoalesceMaxDelay, "want coalesce-window > 0 and coalesce-max-delay >= coalesce-window")
	}
	if c.EtcdOpsPerSecond <= 0 {
		return cliconfig.Invalid("etcd-ops-per-second", c.EtcdOpsPerSecond, "want > 0")
	}
	if c.EtcdBootstrapOpsPerSecond <= 0 {
		return cliconfig.Invalid("etcd-bootstrap-ops-per-second", c.EtcdBootstrapOpsPerSecond, "want > 0")
	}
	if c.SyncTimeout <= 0 {
		return cliconfig.Invalid("sync-timeout", c.SyncTimeout, "want > 0")
	}
	if c.MaxRecvMsgSize <= 0 {
		return cliconfig.Invalid("max-recv-msg-size", c.MaxRecvMsgSize, "want > 0")
	}
	if c.Mode == modeWorkload {
		return cliconfig.Invalid("mode", c.Mode, "the ambient workload API mode is not implemented yet; use sotw")
	}
	return nil
}

// relayID is --relay-id, else $POD_NAME, else the host name, else
// etcdsink.DefaultRelayID.
func (c *config) relayID() string {
	if c.RelayID != "" {
		return c.RelayID
	}
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return etcdsink.DefaultRelayID
}

// pod is $POD_NAME, else the host name: reported in the membership record.
func pod() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, _ := os.Hostname()
	return h
}

// nodeMetadata converts --node-metadata to the relay's form.
func (c *config) nodeMetadata() map[string]any {
	if len(c.NodeMetadata) == 0 {
		return nil
	}
	m := make(map[string]any, len(c.NodeMetadata))
	for k, v := range c.NodeMetadata {
		m[k] = v
	}
	return m
}

// decodeConfig is `relay decode`'s configuration.
type decodeConfig struct {
	File cliconfig.ConfigFile
	Key  string
}

func (c *decodeConfig) Bind(fs *pflag.FlagSet) {
	c.File.Bind(fs)
	fs.StringVar(&c.Key, "key", "", "the etcd key the value was read from (decides spec vs slice)")
}

func (c *decodeConfig) Validate() error { return nil }

// inspectConfig is `relay inspect`'s configuration.
type inspectConfig struct {
	File cliconfig.ConfigFile
	Etcd cliconfig.Etcd
	Log  cliconfig.Log
}

func (c *inspectConfig) Bind(fs *pflag.FlagSet) {
	c.File.Bind(fs)
	c.Etcd.Bind(fs, "etcd endpoints (comma-separated); required")
	c.Log.Bind(fs)
}

// statusConfig is `relay status`'s configuration.
type statusConfig struct {
	inspectConfig
	Shards int
}

func (c *statusConfig) Bind(fs *pflag.FlagSet) {
	c.inspectConfig.Bind(fs)
	fs.IntVar(&c.Shards, "shards", keyspace.DefaultShards, "number of keyspace shards (as the relays')")
}

func (c *statusConfig) Validate() error {
	if c.Shards < 1 || c.Shards > keyspace.MaxShards {
		return cliconfig.Invalid("shards", c.Shards, "want 1..4096")
	}
	if len(c.Etcd.Endpoints) == 0 {
		return &cliconfig.UsageError{Msg: "status: --etcd-endpoints is required"}
	}
	return c.inspectConfig.Validate()
}

func (c *inspectConfig) Validate() error {
	if err := c.Log.Validate(); err != nil {
		return err
	}
	if len(c.Etcd.Endpoints) == 0 {
		return &cliconfig.UsageError{Msg: "inspect: --etcd-endpoints is required (the relay prints it at start)"}
	}
	return c.Etcd.Validate()
}
