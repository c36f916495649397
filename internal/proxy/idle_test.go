package proxy

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A stream that goes quiet for longer than idle_timeout is ended; one that
// keeps talking lives past it; an upstream that never answers gets 504.
func TestIdleTimeout(t *testing.T) {
	const idle = 150 * time.Millisecond
	release := make(chan struct{})
	defer close(release)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/quiet-after-one":
			fmt.Fprintln(w, "one")
			w.(http.Flusher).Flush()
		case "/talkative":
			for i := range 10 {
				fmt.Fprintln(w, "line", i)
				w.(http.Flusher).Flush()
				time.Sleep(idle / 3)
			}
			return
		case "/silent":
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	route := plainRoute(t, up.URL)
	route.Timeout, route.IdleTimeout = 0, idle
	p := newProxy(t, route)
	srv := front(t, p, nil)

	t.Run("a quiet stream ends", func(t *testing.T) {
		resp, err := srv.Client().Get(srv.URL + "/quiet-after-one")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		if !sc.Scan() || sc.Text() != "one" {
			t.Fatalf("first line: got %q, want one", sc.Text())
		}
		if sc.Scan() {
			t.Errorf("after going quiet the stream sent %q, want its end", sc.Text())
		}
	})
	t.Run("a talkative stream lives on", func(t *testing.T) {
		resp, err := srv.Client().Get(srv.URL + "/talkative")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if len(lines) != 10 {
			t.Errorf("got %d lines (%s), want all 10", len(lines), strings.Join(lines, "; "))
		}
	})
	t.Run("an upstream that never answers", func(t *testing.T) {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", testFrom+"/silent", nil))
		if st := statusOf(t, rec); rec.Code != http.StatusGatewayTimeout || !strings.Contains(st.Message, "idle_timeout") {
			t.Errorf("got %d %+v, want 504 naming idle_timeout", rec.Code, st)
		}
	})
}
