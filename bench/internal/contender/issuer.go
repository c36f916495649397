package contender

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// Issuer is a minimal OpenID provider served over TLS on loopback by the
// harness itself: discovery and a JWKS with one RS256 key, and Mint, which
// signs the ID token a login would have produced. It has no login, token or
// userinfo flow; the endpoints are listed in discovery only because OpenID
// Connect Discovery 1.0 §3 makes them required and oauth2-proxy's oidc
// provider reads them at start. oauth2-proxy verifies the bearer tokens
// against the JWKS, so minting costs nothing during a measurement.
type Issuer struct {
	URL      string // https://127.0.0.1:PORT, the iss claim; no trailing slash
	ClientID string // the aud claim: the client the tokens are issued to

	caPEM       []byte // the CA that signed the serving certificate
	key         *rsa.PrivateKey
	kid         string
	srv         *http.Server
	done        chan struct{}
	jwksFetches atomic.Int64 // how often a verifier fetched the keys
}

// issuerClientID is the audience of every minted token.
const issuerClientID = "portcullis-bench"

// StartIssuer serves an issuer on 127.0.0.1 with a certificate from ca.
func StartIssuer(ca *testenv.CA) (*Issuer, error) {
	certPEM, keyPEM, err := ca.Issue("issuer", "127.0.0.1", "localhost")
	if err != nil {
		return nil, fmt.Errorf("starting issuer: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("starting issuer: %w", err)
	}
	// 2048 bits is what providers commonly sign with, so verification in
	// the proxy costs what it would in production.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("starting issuer: generating signing key: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting issuer: %w", err)
	}
	i := &Issuer{
		URL:      "https://" + ln.Addr().String(),
		ClientID: issuerClientID,
		caPEM:    ca.CertPEM,
		key:      key,
		kid:      jwkThumbprint(&key.PublicKey),
		done:     make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("GET /jwks", i.serveJWKS)
	// The interactive endpoints exist so that discovery is complete; a
	// client that follows them learns that this issuer only mints.
	for _, p := range []string{"/authorize", "/token", "/userinfo"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) {
			writeIssuerJSON(w, http.StatusNotImplemented, map[string]string{
				"error":             "unsupported",
				"error_description": "the bench issuer only mints tokens for the harness",
			})
		})
	}
	i.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	go func() {
		defer close(i.done)
		i.srv.ServeTLS(ln, "", "")
	}()
	return i, nil
}

// Close stops serving.
func (i *Issuer) Close() {
	if i == nil || i.srv == nil {
		return
	}
	i.srv.Close()
	<-i.done
}

// Mint returns an RS256 ID token for email with the given groups, valid for
// ttl from now (a negative ttl mints an expired token).
func (i *Issuer) Mint(email string, groups []string, ttl time.Duration) (string, error) {
	now := time.Now()
	return signJWT(i.key, i.kid, i.claims(email, groups, now, now.Add(ttl)))
}

// idClaims are the claims of a minted token: those of an ID token (OpenID
// Connect Core §2) plus the email and groups a proxy maps to a Kubernetes
// user. email_verified is true because oauth2-proxy refuses unverified
// addresses by default.
type idClaims struct {
	Issuer        string   `json:"iss"`
	Audience      string   `json:"aud"`
	Subject       string   `json:"sub"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"`
	Groups        []string `json:"groups"`
	IssuedAt      int64    `json:"iat"`
	Expiry        int64    `json:"exp"`
}

func (i *Issuer) claims(email string, groups []string, iat, exp time.Time) idClaims {
	if groups == nil {
		groups = []string{}
	}
	return idClaims{
		Issuer:        i.URL,
		Audience:      i.ClientID,
		Subject:       email,
		Email:         email,
		EmailVerified: true,
		Groups:        groups,
		IssuedAt:      iat.Unix(),
		Expiry:        exp.Unix(),
	}
}

// signJWT signs claims as a compact JWS with RS256 (RFC 7515, RFC 7518
// §3.3). The standard library is enough for one fixed algorithm.
func signJWT(key *rsa.PrivateKey, kid string, claims any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("minting token: %w", err)
	}
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("minting token: %w", err)
	}
	return signingInput + "." + enc.EncodeToString(sig), nil
}

// jwkThumbprint names a key by its RFC 7638 thumbprint, so that a new key (a new
// issuer) never shares a kid with an old one a verifier has cached.
func jwkThumbprint(pub *rsa.PublicKey) string {
	// Members in lexicographic order, no whitespace (RFC 7638 §3.3).
	b, _ := json.Marshal(struct {
		E   string `json:"e"`
		Kty string `json:"kty"`
		N   string `json:"n"`
	}{E: jwkInt(big.NewInt(int64(pub.E))), Kty: "RSA", N: jwkInt(pub.N)})
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func jwkInt(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }

func (i *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	// OpenID Connect Discovery 1.0 §3: the REQUIRED members, and
	// userinfo_endpoint, which oauth2-proxy reads.
	writeIssuerJSON(w, http.StatusOK, map[string]any{
		"issuer":                                i.URL,
		"authorization_endpoint":                i.URL + "/authorize",
		"token_endpoint":                        i.URL + "/token",
		"userinfo_endpoint":                     i.URL + "/userinfo",
		"jwks_uri":                              i.URL + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "email", "groups"},
		"claims_supported":                      []string{"iss", "aud", "sub", "email", "email_verified", "groups", "iat", "exp"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	i.jwksFetches.Add(1)
	pub := &i.key.PublicKey
	writeIssuerJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "RSA",
		"use": "sig",
		"alg": "RS256",
		"kid": i.kid,
		"n":   jwkInt(pub.N),
		"e":   jwkInt(big.NewInt(int64(pub.E))),
	}}})
}

func writeIssuerJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// errNoIssuer is returned by contenders that need Env.Issuer when it is nil.
var errNoIssuer = errors.New("env.Issuer is nil: start one with StartIssuer")
