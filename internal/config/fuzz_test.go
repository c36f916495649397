package config

import (
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary config files and environments to Load. It
// must never panic; when it fails, it says why in Problems; when it
// succeeds, the Options are valid.
//
// The environment is given as KEY=VALUE lines. Files named by *_file
// settings come from a fixed in-memory set, so that the fuzzer cannot
// make Load read the machine's files (or block on a device).
func FuzzLoad(f *testing.F) {
	cert := readTestdata(f, "guide-cert.pem")
	key := readTestdata(f, "guide-key.pem")
	files := map[string]string{
		"cert.pem": cert,
		"key.pem":  key,
		"ca.pem":   cert,
		"cookie":   b64(strings.Repeat("c", 32)),
		"secret":   "s3cret\n",
	}
	readFile := func(path string) ([]byte, error) {
		if s, ok := files[path]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}

	environ := func(e env) string {
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(e)) {
			// Values with a newline cannot be given; drop them.
			if v := e[k]; !strings.Contains(v, "\n") {
				b.WriteString(k + "=" + v + "\n")
			}
		}
		return b.String()
	}
	f.Add(readTestdata(f, "guide.yaml"), "")
	f.Add("", environ(readEnvFile(f, "testdata/guide.env")))
	f.Add("certificate_file: cert.pem\ncertificate_key_file: key.pem\n"+
		"routes:\n  - from: https://a.example.com\n    to: [https://b.example.com]\n    tls_custom_ca_file: ca.pem\n",
		"COOKIE_SECRET_FILE=cookie\nIDP_CLIENT_SECRET_FILE=secret\nROUTES="+
			b64("- from: https://c.example.com\n  to: https://d.example.com\n  policy: {allow: {and: [{or: [{user: a}]}]}}\n"))
	f.Add("idp_request_params:\n  prompt: login\n  max_age: 0\n", "IDP_REQUEST_PARAMS={\"hd\":\"example.com\",\"login_hint\":\"a=b\"}")
	f.Add("idp_request_params: prompt=login,hd=example.com\n", "")
	f.Add("x: &a [*a]\nroutes: &r [*r]\n", "")
	f.Add("routes:\n  - &r\n    from: https://a.example.com\n    to: https://b.example.com\n    policy: &p {allow: {or: [{email: &v {is: *v}}]}}\n  - <<: *r\n", "")
	f.Add(readTestdata(f, "pomerium-migration.yaml"), "COOKIE_SECURE=false\nHEADERS=X-Frame-Options:DENY\nOTEL_TRACES_EXPORTER=otlp\n")
	f.Add("routes:\n  - from: https://a.example.com\n    to: https://b.example.com\n    name: A\n    Prefix: /x\n    allowed_users: [1234, true]\n", "")
	for _, tc := range problemCases(f) {
		f.Add(tc.file, environ(tc.env))
	}

	f.Fuzz(func(t *testing.T, file, environ string) {
		e := env{}
		for line := range strings.Lines(environ) {
			if k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "="); ok {
				e[k] = v
			}
		}
		path := ""
		if file != "" {
			path = "config.yaml"
		}
		o, err := load(path, e.lookup, func(name string) ([]byte, error) {
			if path != "" && name == path {
				return []byte(file), nil
			}
			return readFile(name)
		})
		if err != nil {
			if o != nil {
				t.Errorf("Load returned Options with an error")
			}
			ps := Problems(err)
			if len(ps) == 0 {
				t.Fatalf("Load failed with no Problem: %v", err)
			}
			for _, p := range ps {
				if p.Message == "" {
					t.Errorf("a Problem with no message: %#v", p)
				}
			}
			return
		}
		if err := o.Check(); err != nil {
			t.Fatalf("Load succeeded, but Check reports:\n%v", err)
		}
		_ = o.Summary()
	})
}
