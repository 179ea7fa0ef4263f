package main

import (
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay"
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
	IstiodTokenFile                                   string

	Pprof bool

	SyncTimeout    time.Duration
	MaxRecvMsgSize int

	CoalesceWindow, CoalesceMaxDelay            time.Duration
	EtcdOpsPerSecond, EtcdBootstrapOpsPerSecond float64

	EtcdListen, EtcdDataDir string

	MaxDeleteFraction float64
	DeleteGuardMin    int
	DeleteHoldTime    time.Duration

	UpstreamLostTimeout, StallTimeout time.Duration
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
	fs.StringVar(&c.Mode, "mode", modeSotW, "upstream API: sotw (CDS/EDS/LDS/RDS); workload (Istio's ambient workload API over delta xDS)")
	fs.IntVar(&c.Shards, "shards", keyspace.DefaultShards, "number of keyspace shards")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", shard.DefaultLeaseTTL, "TTL of this replica's etcd lease (whole seconds, >= 1s): its shards are taken over this long after it dies")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "127.0.0.1:9464", "address of /metrics, /healthz, /readyz and, with --pprof, /debug/pprof/ (empty disables)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof/ on --metrics-listen")
	fs.StringVar(&c.RelayID, "relay-id", "", "this replica's id: relays/<relay-id>, its election keys' value, synced/ markers (default $POD_NAME, else the host name); unique per replica")
	fs.StringVar(&c.NodeID, "node-id", "", "xDS node id (default sidecar~$POD_IP~$POD_NAME.$POD_NAMESPACE~$POD_NAMESPACE.svc.cluster.local; ztunnel~... in --mode workload)")
	fs.StringToStringVar(&c.NodeMetadata, "node-metadata", nil, "extra xDS node metadata, key=value,... (e.g. ISTIO_VERSION=1.28.0)")
	fs.StringVar(&c.IstiodCA, "istiod-ca", "", "Istiod TLS: CA file (enables TLS)")
	fs.StringVar(&c.IstiodCert, "istiod-cert", "", "Istiod TLS: client certificate file")
	fs.StringVar(&c.IstiodKey, "istiod-key", "", "Istiod TLS: client key file")
	fs.StringVar(&c.IstiodServerName, "istiod-server-name", "", "Istiod TLS: server name to verify (default: the host of --istiod)")
	fs.StringVar(&c.IstiodTokenFile, "istiod-token-file", "", "Istiod TLS: JWT file (a projected service account token, audience istio-ca) sent as 'authorization: Bearer', read again when it changes")
	fs.DurationVar(&c.SyncTimeout, "sync-timeout", 5*time.Second, "how long to wait for named EDS/RDS resources before the upstream state counts as complete")
	fs.IntVar(&c.MaxRecvMsgSize, "max-recv-msg-size", 256<<20, "largest xDS message accepted from Istiod, bytes")
	fs.DurationVar(&c.CoalesceWindow, "coalesce-window", 100*time.Millisecond, "shortest time between two writes of one service: a change after quiet is written at once, later ones at the end of the window")
	fs.DurationVar(&c.CoalesceMaxDelay, "coalesce-max-delay", time.Second, "longest a change waits before it is written")
	fs.Float64Var(&c.EtcdOpsPerSecond, "etcd-ops-per-second", etcdsink.DefaultOpsPerSecond, "etcd write rate limit after the first complete sync (operations/s)")
	fs.Float64Var(&c.EtcdBootstrapOpsPerSecond, "etcd-bootstrap-ops-per-second", etcdsink.DefaultBootstrapOpsPerSecond, "etcd write rate limit until the first complete sync (operations/s)")
	fs.Float64Var(&c.MaxDeleteFraction, "max-delete-fraction", etcdsink.DefaultMaxDeleteFraction, "largest share of the services in etcd one upstream state may remove before the removals are held (1 disables the guard)")
	fs.IntVar(&c.DeleteGuardMin, "delete-guard-min", etcdsink.DefaultDeleteGuardMin, "removals below this many services are never held")
	fs.DurationVar(&c.DeleteHoldTime, "delete-hold-time", etcdsink.DefaultDeleteHoldTime, "how long held removals wait before a fresh upstream stream still asking for them releases them")
	fs.DurationVar(&c.UpstreamLostTimeout, "upstream-lost-timeout", relay.DefaultUpstreamLostTimeout, "/readyz fails once Istiod has been unreachable, or an RDS route listeners read has been missing, this long")
	fs.DurationVar(&c.StallTimeout, "stall-timeout", relay.DefaultStallTimeout, "/healthz fails once the etcd writer (or one upstream update) made no progress this long with work pending")
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
	if len(c.Etcd.Endpoints) == 0 && c.Etcd.TLS() {
		return cliconfig.Invalid("etcd-ca", c.Etcd.CAFile+c.Etcd.CertFile, "etcd TLS flags need --etcd-endpoints with https://; the embedded etcd is plaintext on loopback")
	}
	if err := c.validateIstiodTLS(); err != nil {
		return err
	}
	if c.IstiodTokenFile != "" && c.IstiodCA == "" && c.IstiodCert == "" {
		return cliconfig.Invalid("istiod-token-file", c.IstiodTokenFile, "a token is sent over TLS only: set --istiod-ca")
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
	if c.MaxDeleteFraction <= 0 || c.MaxDeleteFraction > 1 {
		return cliconfig.Invalid("max-delete-fraction", c.MaxDeleteFraction, "want a fraction in (0, 1]")
	}
	if c.DeleteGuardMin < 1 {
		return cliconfig.Invalid("delete-guard-min", c.DeleteGuardMin, "want >= 1")
	}
	if c.DeleteHoldTime <= 0 {
		return cliconfig.Invalid("delete-hold-time", c.DeleteHoldTime, "want > 0")
	}
	if c.UpstreamLostTimeout <= 0 {
		return cliconfig.Invalid("upstream-lost-timeout", c.UpstreamLostTimeout, "want > 0")
	}
	if c.StallTimeout <= 0 {
		return cliconfig.Invalid("stall-timeout", c.StallTimeout, "want > 0")
	}
	return nil
}

// validateIstiodTLS refuses Istiod TLS flags that make no complete
// configuration: TLS needs --istiod-ca (Istiod's certificate is always
// verified); --istiod-cert and --istiod-key go together; a server name
// alone would select plaintext.
func (c *config) validateIstiodTLS() error {
	if (c.IstiodCert == "") != (c.IstiodKey == "") {
		return cliconfig.Invalid("istiod-cert", c.IstiodCert, "--istiod-cert and --istiod-key go together")
	}
	if c.IstiodCA == "" && (c.IstiodCert != "" || c.IstiodServerName != "") {
		return cliconfig.Invalid("istiod-ca", "", "Istiod TLS (--istiod-cert, --istiod-key, --istiod-server-name) needs --istiod-ca")
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

// nodeMetadata converts --node-metadata to the relay's form, with
// CLUSTER_ID from the environment unless the flag sets it (the node's
// SERVICE_ACCOUNT, NAMESPACE and the rest come from the environment in
// package relay).
func (c *config) nodeMetadata() map[string]any {
	m := make(map[string]any, len(c.NodeMetadata)+1)
	if id := os.Getenv("CLUSTER_ID"); id != "" {
		m["CLUSTER_ID"] = id
	}
	for k, v := range c.NodeMetadata {
		m[k] = v
	}
	if len(m) == 0 {
		return nil
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
