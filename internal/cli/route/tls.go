package route

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TLSOptions are the TLS flags pomerium-cli has, with the same names.
type TLSOptions struct {
	// CACert (--ca-cert) is a CA certificate to trust besides the
	// system's: a PEM file, or base64-encoded PEM as pomerium-cli takes it.
	CACert string
	// AlternateCAPath (--alternate-ca-path) is a PEM file of CA
	// certificates to trust besides the system's.
	AlternateCAPath string
	// InsecureSkipVerify (--disable-tls-verification) accepts any
	// certificate. Anyone on the path can then read the token.
	InsecureSkipVerify bool
}

// CAPEM returns the PEM of the extra CA certificates (nil if none), for
// the TLS configuration and for the kubeconfig `setup` writes.
func (o TLSOptions) CAPEM() ([]byte, error) {
	var all []byte
	if o.CACert != "" {
		b, err := readCACert(o.CACert)
		if err != nil {
			return nil, err
		}
		all = append(all, b...)
	}
	if o.AlternateCAPath != "" {
		b, err := os.ReadFile(o.AlternateCAPath)
		if err != nil {
			return nil, fmt.Errorf("reading --alternate-ca-path: %w", err)
		}
		if !hasCertificate(b) {
			return nil, fmt.Errorf("reading --alternate-ca-path: %s holds no PEM certificate", o.AlternateCAPath)
		}
		all = append(all, b...)
	}
	return all, nil
}

// readCACert reads --ca-cert: a file if one is there, else base64 PEM
// (pomerium-cli's form), else the error of reading it as a file.
func readCACert(v string) ([]byte, error) {
	b, ferr := os.ReadFile(v)
	if ferr == nil {
		if !hasCertificate(b) {
			return nil, fmt.Errorf("reading --ca-cert: %s holds no PEM certificate", v)
		}
		return b, nil
	}
	if strings.HasPrefix(strings.TrimSpace(v), "-----BEGIN") && hasCertificate([]byte(v)) {
		return []byte(v), nil
	}
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v)); err == nil && hasCertificate(b) {
		return b, nil
	}
	if errors.Is(ferr, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading --ca-cert: %q is neither a file nor base64-encoded PEM", short(v))
	}
	return nil, fmt.Errorf("reading --ca-cert: %w", ferr)
}

func hasCertificate(b []byte) bool {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return false
		}
		if block.Type == "CERTIFICATE" {
			return true
		}
	}
}

func short(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// Config returns the client TLS configuration: the system roots plus the
// extra CA certificates, or no verification at all if asked.
func (o TLSOptions) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true // --disable-tls-verification, a person's explicit choice
		return cfg, nil
	}
	extra, err := o.CAPEM()
	if err != nil || extra == nil {
		return cfg, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(extra) {
		return nil, errors.New("reading CA certificates: none could be parsed")
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// Args returns the flags that reproduce o on a command line, with file
// paths made absolute so the command works from any directory (kubectl
// runs the exec plugin from wherever kubectl was started).
func (o TLSOptions) Args() ([]string, error) {
	var args []string
	if o.CACert != "" {
		v := o.CACert
		if _, err := os.Stat(v); err == nil {
			if v, err = filepath.Abs(v); err != nil {
				return nil, err
			}
		}
		args = append(args, "--ca-cert", v)
	}
	if o.AlternateCAPath != "" {
		v, err := filepath.Abs(o.AlternateCAPath)
		if err != nil {
			return nil, err
		}
		args = append(args, "--alternate-ca-path", v)
	}
	if o.InsecureSkipVerify {
		args = append(args, "--disable-tls-verification")
	}
	return args, nil
}
