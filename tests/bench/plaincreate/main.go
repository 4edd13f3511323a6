// plaincreate: the baseline for tests/bench/restore.sh and realcp.sh — the fastest plain
// parallel-create client we could write: one keep-alive HTTP/1.1 connection per worker,
// one POST per object, no ordering beyond "namespaces first", no verification, no gate.
//
// Usage: plaincreate -server URL [-ca F -cert F -key F] [-workers N] < objects.ndjson
// Each input line: {"path": "/api/v1/namespaces/NS/configmaps", "body": {...}}. Lines whose
// body is a Namespace are created first. Prints one JSON line: objects, seconds, failures.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type line struct {
	Path string          `json:"path"`
	Body json.RawMessage `json:"body"`
}

func main() {
	server := flag.String("server", "", "API server URL")
	ca := flag.String("ca", "", "CA file")
	cert := flag.String("cert", "", "client certificate file")
	key := flag.String("key", "", "client key file")
	workers := flag.Int("workers", 64, "requests in flight")
	flag.Parse()
	tr := &http.Transport{MaxIdleConnsPerHost: *workers, MaxConnsPerHost: *workers}
	if *ca != "" {
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(*ca)
		must(err)
		pool.AppendCertsFromPEM(pem)
		cfg := &tls.Config{RootCAs: pool}
		if *cert != "" {
			c, err := tls.LoadX509KeyPair(*cert, *key)
			must(err)
			cfg.Certificates = []tls.Certificate{c}
		}
		tr.TLSClientConfig = cfg
	}
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	var first, rest []line
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var l line
		must(json.Unmarshal(sc.Bytes(), &l))
		if bytes.Contains(l.Body[:min(len(l.Body), 200)], []byte(`"kind":"Namespace"`)) {
			first = append(first, l)
		} else {
			rest = append(rest, l)
		}
	}
	must(sc.Err())
	var failed atomic.Int64
	post := func(l line) {
		for attempt := 0; ; attempt++ {
			resp, err := client.Post(*server+l.Path, "application/json", bytes.NewReader(l.Body))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode < 300 || resp.StatusCode == 409 {
					return
				}
				if resp.StatusCode != 429 && resp.StatusCode < 500 {
					failed.Add(1)
					return
				}
			}
			if attempt >= 10 {
				failed.Add(1)
				return
			}
			time.Sleep(time.Duration(100<<min(attempt, 6)) * time.Millisecond)
		}
	}
	start := time.Now()
	run := func(ls []line) {
		ch := make(chan line)
		var wg sync.WaitGroup
		for i := 0; i < *workers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for l := range ch {
					post(l)
				}
			}()
		}
		for _, l := range ls {
			ch <- l
		}
		close(ch)
		wg.Wait()
	}
	run(first)
	run(rest)
	secs := time.Since(start).Seconds()
	fmt.Printf("{\"objects\": %d, \"seconds\": %.3f, \"failures\": %d}\n", len(first)+len(rest), secs, failed.Load())
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
