package etcdinit

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// In-cluster credentials of a pod's service account.
const (
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// ConfigMap is one key of a ConfigMap written through the Kubernetes API
// (get and patch of that ConfigMap is all the RBAC it needs).
type ConfigMap struct {
	// APIServer is the API's URL, e.g. https://10.96.0.1:443.
	APIServer       string
	Namespace, Name string
	// TokenFile is the bearer token, read for every request (the kubelet
	// rotates it).
	TokenFile string
	// HTTP talks to the API server, verifying it.
	HTTP *http.Client
}

// InClusterConfigMap is ConfigMap name in namespace, reached with the
// pod's service account (KUBERNETES_SERVICE_HOST and _PORT, and the
// token and CA mounted under /var/run/secrets/kubernetes.io/serviceaccount).
func InClusterConfigMap(namespace, name string) (*ConfigMap, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset")
	}
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return nil, fmt.Errorf("kubernetes CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("kubernetes CA: no PEM certificate")
	}
	return &ConfigMap{
		APIServer: "https://" + net.JoinHostPort(host, port),
		Namespace: namespace, Name: name,
		TokenFile: serviceAccountDir + "/token",
		HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		}},
	}, nil
}

func (c *ConfigMap) url() string {
	return fmt.Sprintf("%s/api/v1/namespaces/%s/configmaps/%s", c.APIServer, url.PathEscape(c.Namespace), url.PathEscape(c.Name))
}

// Publish sets key to value unless it already holds it, and reports
// whether it wrote.
func (c *ConfigMap) Publish(ctx context.Context, key, value string) (bool, error) {
	var cm struct {
		Data map[string]string `json:"data"`
	}
	body, err := c.do(ctx, http.MethodGet, nil, "")
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(body, &cm); err != nil {
		return false, fmt.Errorf("configmap %s/%s: %w", c.Namespace, c.Name, err)
	}
	if v, ok := cm.Data[key]; ok && v == value {
		return false, nil
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]string{key: value}})
	if err != nil {
		return false, err
	}
	if _, err := c.do(ctx, http.MethodPatch, patch, "application/merge-patch+json"); err != nil {
		return false, err
	}
	return true, nil
}

func (c *ConfigMap) do(ctx context.Context, method string, body []byte, contentType string) ([]byte, error) {
	tok, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("kubernetes token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s configmap %s/%s: %w", method, c.Namespace, c.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s configmap %s/%s: %w", method, c.Namespace, c.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s configmap %s/%s: %s: %s", method, c.Namespace, c.Name, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}
