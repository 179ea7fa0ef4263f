package e2e

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/internal/testsupport/testpki"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/relay"
	"github.com/meshrelay/meshrelay/relay/etcdinit"
)

// TestSecuredEndToEnd: etcd over TLS with auth set up by etcdinit; the
// relay writes as meshrelay-relay and the agent reads as meshrelay-agent,
// first with passwords, then with client certificates whose CN is the user
// (--client-cert-auth). The declared services reach the agent's datapath.
func TestSecuredEndToEnd(t *testing.T) {
	passwords := etcdinit.Options{RootPassword: "r", RelayPassword: "relay-pw", AgentPassword: "agent-pw"}
	for name, certAuth := range map[string]bool{"password": false, "cert": true} {
		t.Run(name, func(t *testing.T) {
			ca := testpki.NewCA(t, "etcd-ca")
			srv := testenv.StartTLSEtcd(t, ca, certAuth, embedetcd.Options{})
			dial := func(user, password string) *clientv3.Client {
				t.Helper()
				f := ca.Write(t, t.TempDir(), ca.Client(t, user))
				opts := etcddial.Options{Endpoints: srv.Endpoints(), CAFile: f.CA, ServerName: testenv.ServerName}
				if certAuth {
					opts.CertFile, opts.KeyFile = f.Cert, f.Key
				} else if password != "" {
					opts.Username, opts.Password = user, password
				}
				c, err := etcddial.Dial(opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := etcdinit.Init(ctx, dial(etcdinit.Root, "").Auth, passwords); err != nil {
				t.Fatal(err)
			}

			w := &world{t: t, sim: newSim(t, istiodsim.Options{Services: 12, EndpointsPerService: 3, Namespaces: 2})}
			w.startRelay(dial(etcdinit.Relay, passwords.RelayPassword), relay.ModeSotW)
			declared := []int{2, 7}
			var keys []keyspace.Service
			for _, i := range declared {
				keys = append(keys, w.svcKey(i))
			}
			mem := newMemory()
			startAgent(t, dial(etcdinit.Agent, passwords.AgentPassword), mem, nodeagent.Options{Services: keys, OnDemand: true, ServiceCIDRs: serviceCIDRs})
			w.converges(mem, declared...)
		})
	}
}
