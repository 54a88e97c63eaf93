// helm-render renders a Helm chart as `helm template` does, for the chart tests on machines
// without a helm binary (Debian has none): Go templates with sprig's functions and Helm's own
// include, tpl, toYaml, fromYaml, required and lookup, over .Values, .Release, .Chart,
// .Capabilities, .Template and .Files. It builds with Debian's golang-go and
// golang-github-masterminds-sprig-dev in GOPATH mode.
//
//	helm-render -chart helm/crust [-f values.yaml ...] [-name crust] [-namespace kube-system]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Files is .Files: the chart's non-template files.
type Files map[string][]byte

func (f Files) Get(name string) string { return string(f[name]) }

func readYAML(path string) map[string]interface{} {
	out := map[string]interface{}{}
	b, err := os.ReadFile(path)
	check(err)
	check(yaml.Unmarshal(b, &out))
	return out
}

// merge lays src over dst as Helm does: maps merge key by key, anything else replaces.
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "helm-render:", err)
		os.Exit(1)
	}
}

func main() {
	chart := flag.String("chart", "", "chart directory")
	name := flag.String("name", "crust", "release name")
	namespace := flag.String("namespace", "kube-system", "release namespace")
	var overrides valueFiles
	flag.Var(&overrides, "f", "values file (repeatable)")
	flag.Parse()
	if *chart == "" {
		check(fmt.Errorf("-chart is required"))
	}

	meta := readYAML(filepath.Join(*chart, "Chart.yaml"))
	values := readYAML(filepath.Join(*chart, "values.yaml"))
	for _, f := range overrides {
		values = merge(values, readYAML(f))
	}
	files := Files{}
	var templates []string
	check(filepath.Walk(*chart, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(*chart, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = b
		if strings.HasPrefix(rel, "templates/") {
			templates = append(templates, rel)
		}
		return nil
	}))
	sort.Strings(templates)

	root := template.New("chart").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		_ = yaml.Unmarshal([]byte(s), &m)
		return m
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	// No cluster here: lookups find nothing, as in `helm template`.
	funcs["lookup"] = func(...string) map[string]interface{} { return map[string]interface{}{} }
	root.Funcs(funcs)
	chartName := fmt.Sprint(meta["name"])
	for _, t := range templates {
		_, err := root.New(chartName + "/" + t).Parse(string(files[t]))
		check(err)
	}

	data := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": *name, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"],
			"Description": meta["description"],
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.31.0", "Major": "1", "Minor": "31"},
		},
		"Files": files,
	}
	for _, t := range templates {
		base := filepath.Base(t)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		data["Template"] = map[string]interface{}{"Name": chartName + "/" + t, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		check(root.ExecuteTemplate(&buf, chartName+"/"+t, data))
		if strings.TrimSpace(buf.String()) == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s/%s\n%s\n", chartName, t, strings.TrimSpace(buf.String()))
	}
	// NOTES.txt last, as a comment, so a test can read it without it being a manifest.
	if _, ok := files["templates/NOTES.txt"]; ok {
		var buf bytes.Buffer
		check(root.ExecuteTemplate(&buf, chartName+"/templates/NOTES.txt", data))
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			fmt.Printf("# NOTES: %s\n", line)
		}
	}
}
