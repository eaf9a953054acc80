package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/wardgate/wardgate/cmd/internal/cliflag"
	"github.com/wardgate/wardgate/gateway"
)

// adminCommand parses the admin flags in fs, before or after the
// positional arguments, and returns a client for the running gateway.
func adminCommand(fs *flag.FlagSet, args []string) (*adminClient, error) {
	af := newAdminFlags(fs)
	if err := cliflag.Parse(fs, args); err != nil {
		return nil, err
	}
	cfg, err := af.config()
	if err != nil {
		return nil, err
	}
	return af.client(cfg)
}

// cmdExplain prints the policy decision for one device and release.
func cmdExplain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	c, err := adminCommand(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("explain needs DEVICE (MANUFACTURER/SERIAL) and RELEASE (a target path); see `wardgate devices`")
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var res gateway.ExplainResult
	q := url.Values{"device": {fs.Arg(0)}, "release": {fs.Arg(1)}}
	if err := c.do(ctx, http.MethodGet, "/v1/explain?"+q.Encode(), nil, &res); err != nil {
		return err
	}
	_, err = fmt.Fprint(stdout, res.Text)
	return err
}

// cmdSBOM prints a device's or release's components, or the license
// findings with -licenses.
func cmdSBOM(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sbom", flag.ContinueOnError)
	release := fs.String("release", "", "list the components of this cached release instead of a device")
	licenses := fs.Bool("licenses", false, "report license findings of every cached release")
	format := fs.String("format", "json", "output format: json or csv")
	c, err := adminCommand(fs, args)
	if err != nil {
		return err
	}
	q := url.Values{"format": {*format}}
	path := "/v1/sbom"
	switch {
	case *licenses:
		path = "/v1/licenses"
	case *release != "":
		q.Set("release", *release)
	case fs.NArg() == 1:
		q.Set("device", fs.Arg(0))
	default:
		return errors.New("sbom needs DEVICE (MANUFACTURER/SERIAL), -release TARGET or -licenses")
	}
	return copyAnswer(ctx, c, path+"?"+q.Encode(), stdout)
}

// cmdExposure prints the devices exposed to a vulnerability id.
func cmdExposure(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("exposure", flag.ContinueOnError)
	c, err := adminCommand(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("exposure needs a vulnerability id such as CVE-2021-44228 or GHSA-jfh8-c2jp-5v3q")
	}
	return copyAnswer(ctx, c, "/v1/exposure?"+url.Values{"id": {fs.Arg(0)}}.Encode(), stdout)
}

// cmdAdvisories imports OSV, CycloneDX VEX or OpenVEX files.
func cmdAdvisories(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "import" {
		return errors.New("advisories needs a subcommand: import FILE...")
	}
	fs := flag.NewFlagSet("advisories import", flag.ContinueOnError)
	c, err := adminCommand(fs, args[1:])
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("advisories import needs at least one file")
	}
	prog := newProgress(os.Stderr, "importing advisories").counting("files")
	total := int64(fs.NArg())
	for i, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("reading advisory file: %w", err)
		}
		ctx, cancel := withTimeout(ctx)
		var res struct {
			Kind     string   `json:"kind"`
			Added    []string `json:"added"`
			Replaced []string `json:"replaced"`
		}
		q := url.Values{"name": {filepath.Base(name)}}
		err = c.postFile(ctx, "/v1/advisories?"+q.Encode(), f, &res)
		cancel()
		f.Close()
		if err != nil {
			return fmt.Errorf("importing %s: %w", name, err)
		}
		prog.update(int64(i+1), total, filepath.Base(name))
		fmt.Fprintf(stdout, "%s: %s, %d added, %d replaced\n", name, res.Kind, len(res.Added), len(res.Replaced))
	}
	prog.finish(fmt.Sprintf("%d advisory files imported", total))
	return nil
}

// postFile sends body as the request body of a POST and decodes the JSON
// answer into out.
func (c *adminClient) postFile(ctx context.Context, path string, body io.Reader, out any) error {
	if c.token == "" {
		return errors.New("no API token: pass -token, set WARDGATE_TOKEN, or keep the token from `wardgate init` in admin.token_file")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the gateway's admin listener at %s (is `wardgate serve` running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := string(data)
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return fmt.Errorf("admin API POST %s: %s: %s", path, resp.Status, msg)
	}
	return json.Unmarshal(data, out)
}

// copyAnswer writes the body of a GET response to w, JSON indented.
func copyAnswer(ctx context.Context, c *adminClient, path string, w io.Writer) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	resp, err := c.raw(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	// JSON reports are indented for reading at a terminal; jq and other
	// tools read them either way.
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReport+1))
	if err != nil {
		return fmt.Errorf("reading the gateway's report: %w", err)
	}
	if len(data) > maxReport {
		return fmt.Errorf("the gateway's report is larger than %d MiB: narrow the query", maxReport>>20)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, data, "", "  "); err != nil {
		return fmt.Errorf("the gateway's report is not valid JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// maxReport bounds the JSON report that copyAnswer reads into memory.
const maxReport = 256 << 20
