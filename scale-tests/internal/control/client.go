package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Client is the harness's side of a child's control API.
type Client struct {
	base string
	hc   *http.Client
}

func NewClient(addr string) *Client {
	return &Client{base: "http://" + addr + "/", hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
}

// Call posts req to verb and decodes the answer into resp (which may be
// nil). Long operations are bounded by ctx.
func (c *Client) Call(ctx context.Context, verb string, req, resp any) error {
	if req == nil {
		req = struct{}{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: encode: %w", verb, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+verb, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	res, err := c.hc.Do(hr)
	if err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("%s: %s: %s", verb, res.Status, bytes.TrimSpace(msg))
	}
	if resp == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(resp); err != nil {
		return fmt.Errorf("%s: decode answer: %w", verb, err)
	}
	return nil
}

// CallTimeout is call bounded by d.
func (c *Client) CallTimeout(ctx context.Context, d time.Duration, verb string, req, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return c.Call(ctx, verb, req, resp)
}
