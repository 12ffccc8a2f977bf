// helmrender renders a chart's templates the way `helm template` does, for tests on machines
// without Helm: Go's text/template with the sprig functions (Debian's golang-go and
// golang-github-masterminds-sprig-dev) plus the few Helm adds that the IsletNet chart uses
// (lookup returns nothing, as in `helm template`; .Capabilities.APIVersions.Has; .Release).
//
// Usage: helmrender [--notes] CHART_DIR VALUES_JSON NAMESPACE API_VERSION...
// Prints every rendered template, each after a "# Source: templates/NAME" line and "---"; with
// --notes, only templates/NOTES.txt, which Helm prints after an install or upgrade.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	sprig "github.com/Masterminds/sprig" // v3, at this path in Debian
)

type versionSet []string

// Has answers like Helm's .Capabilities.APIVersions.Has ("batch/v1" or "batch/v1/CronJob").
func (v versionSet) Has(name string) bool {
	for _, item := range v {
		if item == name {
			return true
		}
	}
	return false
}

func main() {
	args := os.Args[1:]
	notes := len(args) > 0 && args[0] == "--notes"
	if notes {
		args = args[1:]
	}
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: helmrender [--notes] CHART_DIR VALUES_JSON NAMESPACE API_VERSION...")
		os.Exit(2)
	}
	chart, valuesPath, namespace := args[0], args[1], args[2]
	raw, err := os.ReadFile(valuesPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var values map[string]interface{}
	if err := json.Unmarshal(raw, &values); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	funcs := sprig.TxtFuncMap()
	funcs["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	data := map[string]interface{}{
		"Values":       values,
		"Release":      map[string]interface{}{"Name": "isletnet", "Namespace": namespace, "Service": "Helm"},
		"Capabilities": map[string]interface{}{"APIVersions": versionSet(args[3:])},
	}
	files, _ := filepath.Glob(filepath.Join(chart, "templates", "*.yaml"))
	sort.Strings(files)
	if notes {
		files = []string{filepath.Join(chart, "templates", "NOTES.txt")}
	}
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		name := "templates/" + filepath.Base(file)
		tmpl, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(string(text))
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
		var out strings.Builder
		if err := tmpl.Execute(&out, data); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
		if notes {
			fmt.Print(out.String())
		} else {
			fmt.Printf("---\n# Source: %s\n%s\n", name, out.String())
		}
	}
}
