// Package config turns the environment and an optional YAML file into
// Options, the whole server configuration.
//
// It owns:
//   - the compatibility contract with Pomerium's "Securing Kubernetes" guide:
//     every environment variable (ADDRESS, COOKIE_SECRET, POLICY, …), its
//     *_FILE variant, and the same names as lower-case YAML keys;
//   - every default, in one place: Defaults, and the route defaults that
//     Load applies (Kubernetes routes get SPDY, WebSockets and no timeouts);
//   - decoding (base64, PEM files, durations, URL lists) and the parsing of
//     route `policy:` blocks into an uncompiled tree (Policy);
//   - what a Pomerium configuration brings that Portcullis does not
//     implement: pomeriumKeys, one table of Pomerium's keys, each refused
//     with what to do instead (pomerium.go);
//   - validation (in Load, and again in Options.Check), which reports every
//     problem at once, each naming its source: the file and line, the
//     environment variable, or the line of a decoded base64 value.
//
// It must not:
//   - touch the network, start listeners, or hold server logic: the server
//     package decides what to do with Options (including refusing to start
//     without a certificate, or generating missing secrets with a warning);
//   - compile or evaluate policy, or check criterion names: that is the
//     policy package's job, working from the tree stored here;
//   - read a Kubernetes service-account token file: it is re-read at run
//     time so that rotation is picked up;
//   - log or print secrets: Summary shows whether a secret is set, never its
//     value.
//
// Reading files is limited to the config file and the *_file settings it
// names; every such read is bounded in size.
package config
