package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// nginxConf is nginx configured as its documentation describes for
// static files (sendfile, tcp_nopush) and for a caching proxy whose
// concurrent misses wait for one upstream fetch (proxy_cache_lock).
const nginxConf = `worker_processes auto;
worker_rlimit_nofile 16384;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  default_type application/octet-stream;
  client_body_temp_path %[1]s/client;
  proxy_temp_path %[1]s/proxy-temp;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  proxy_cache_path %[1]s/proxy-cache levels=1:2 keys_zone=blobs:10m max_size=10g inactive=60m use_temp_path=off;
  server {
    listen %[2]s;
    root %[1]s/static;
  }
  server {
    listen %[5]s sndbuf=256k;
    root %[1]s/static;
  }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://%[4]s;
      proxy_http_version 1.1;
      proxy_cache blobs;
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 60s;
      proxy_cache_lock_age 60s;
    }
  }
}
`

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// nginxAddrs are the listen addresses of the nginx server blocks.
type nginxAddrs struct {
	static, sndbuf, proxy string
}

// startNginx serves the targets by SHA-256 from a folder of hard links,
// once as documented and once with the gateway's busy send buffer, and
// proxies to the upstream with a cache.
func startNginx(dir, targets string, sums map[string]string, upstream string) (*exec.Cmd, nginxAddrs, error) {
	var a nginxAddrs
	ng := filepath.Join(dir, "nginx")
	static := filepath.Join(ng, "static")
	if err := os.MkdirAll(static, 0o755); err != nil {
		return nil, a, err
	}
	for name, sum := range sums {
		if err := os.Link(filepath.Join(targets, sum+"."+name), filepath.Join(static, sum)); err != nil {
			return nil, a, err
		}
	}
	for _, p := range []*string{&a.static, &a.sndbuf, &a.proxy} {
		addr, err := freeAddr()
		if err != nil {
			return nil, a, err
		}
		*p = addr
	}
	conf := filepath.Join(ng, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, ng, a.static, a.proxy, upstream, a.sndbuf), 0o644); err != nil {
		return nil, a, err
	}
	cmd := exec.Command("nginx", "-p", ng, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, a, fmt.Errorf("starting nginx: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", a.static)
		if err == nil {
			c.Close()
			return cmd, a, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return nil, a, fmt.Errorf("nginx did not listen on %s; see %s/error.log", a.static, ng)
}
