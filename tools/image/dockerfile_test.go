package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// dockerfileConfigs reads the image config each stage of a Dockerfile states,
// for the instructions that set config (FROM <stage> inherits; a base image's
// own config counts as empty, so the Dockerfile must state all of it). args
// are the --build-arg values.
func dockerfileConfigs(src string, args map[string]string) (stages map[string]*v1.Config, last string, err error) {
	stages = map[string]*v1.Config{}
	global := map[string]string{} // ARGs before the first FROM
	var cur *v1.Config
	var scope map[string]string
	for _, line := range instructions(src) {
		op, rest, _ := strings.Cut(line, " ")
		op, rest = strings.ToUpper(op), strings.TrimSpace(rest)
		if op == "ARG" {
			name, def, _ := strings.Cut(rest, "=")
			v, given := args[name]
			if !given {
				v = def
				if g, ok := global[name]; ok && cur != nil && def == "" {
					v = g
				}
			}
			if cur == nil {
				global[name] = v
			} else {
				scope[name] = v
			}
			continue
		}
		if op == "FROM" {
			f := strings.Fields(rest)
			cur = &v1.Config{}
			if base, ok := stages[f[0]]; ok {
				*cur = copyConfig(*base)
			}
			last = fmt.Sprint(len(stages))
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				last = f[2]
			}
			stages[last] = cur
			scope = map[string]string{}
			continue
		}
		if cur == nil {
			return nil, "", fmt.Errorf("%s before FROM", op)
		}
		rest = expand(rest, scope)
		if err := apply(cur, op, rest); err != nil {
			return nil, "", fmt.Errorf("%s %s: %w", op, rest, err)
		}
	}
	return stages, last, nil
}

// instructions joins continued lines and drops comments and blank lines.
func instructions(src string) []string {
	var out []string
	var cur strings.Builder
	for _, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") || (t == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(t, "\\") + " ")
			continue
		}
		cur.WriteString(t)
		out = append(out, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	return out
}

var argRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

func expand(s string, scope map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		if v, ok := scope[name]; ok {
			return v
		}
		return m
	})
}

// apply sets what one config instruction sets; RUN, COPY and the like set
// none.
func apply(c *v1.Config, op, rest string) error {
	switch op {
	case "USER":
		c.User = rest
	case "WORKDIR":
		c.WorkingDir = rest
	case "ENV":
		for _, kv := range pairs(rest) {
			k, _, _ := strings.Cut(kv, "=")
			i := slices.IndexFunc(c.Env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
			if i >= 0 {
				c.Env[i] = kv
			} else {
				c.Env = append(c.Env, kv)
			}
		}
	case "LABEL":
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for _, kv := range pairs(rest) {
			k, v, _ := strings.Cut(kv, "=")
			c.Labels[k] = v
		}
	case "VOLUME", "EXPOSE":
		var list []string
		if err := json.Unmarshal([]byte(rest), &list); err != nil {
			list = strings.Fields(rest)
		}
		set := map[string]struct{}{}
		for _, v := range list {
			if op == "EXPOSE" && !strings.Contains(v, "/") {
				v += "/tcp"
			}
			set[v] = struct{}{}
		}
		if op == "VOLUME" {
			c.Volumes = merge(c.Volumes, set)
		} else {
			c.ExposedPorts = merge(c.ExposedPorts, set)
		}
	case "ENTRYPOINT", "CMD":
		var list []string
		if err := json.Unmarshal([]byte(rest), &list); err != nil {
			return fmt.Errorf("want the exec (JSON) form: %w", err)
		}
		if len(list) == 0 {
			list = nil
		}
		if op == "ENTRYPOINT" {
			c.Entrypoint, c.Cmd = list, nil // Docker resets an inherited CMD
		} else {
			c.Cmd = list
		}
	}
	return nil
}

// pairs splits "k=v k2=v2" (the only ENV and LABEL form keyd's Dockerfile
// uses; quotes are refused so that none is misread).
func pairs(s string) []string {
	f := strings.Fields(s)
	for _, kv := range f {
		if !strings.Contains(kv, "=") || strings.ContainsAny(kv, `"'`) {
			panic(fmt.Sprintf("Dockerfile: %q is not an unquoted key=value", kv))
		}
	}
	return f
}

func merge(a, b map[string]struct{}) map[string]struct{} {
	out := map[string]struct{}{}
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}

func copyConfig(c v1.Config) v1.Config {
	raw, _ := json.Marshal(c)
	var out v1.Config
	_ = json.Unmarshal(raw, &out)
	return out
}

// TestDockerfileConfig: the config each Dockerfile target states (keyd's,
// the default, and tools) is the one make image writes.
func TestDockerfileConfig(t *testing.T) {
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]string{"VERSION": "1.2.3", "REVISION": "0123abcd"}
	stages, last, err := dockerfileConfigs(string(raw), args)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target string
		k      kind
	}{{last, keydImage}, {"keyd", keydImage}, {"tools", toolsImage}} {
		got, ok := stages[tc.target]
		if !ok {
			t.Fatalf("the Dockerfile has no stage %q", tc.target)
		}
		want := imageConfig(tc.k, "1.2.3", "0123abcd")
		gotJSON, _ := json.MarshalIndent(*got, "", "  ")
		wantJSON, _ := json.MarshalIndent(want, "", "  ")
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("Dockerfile target %q states the config\n%s\nmake image writes\n%s", tc.target, gotJSON, wantJSON)
		}
	}
}
