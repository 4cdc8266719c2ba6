package main

import (
	"os"
	"path/filepath"
	"time"

	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/policy"
)

// watchInterval is how often the configuration files are checked for
// changes (size and modification time).
const watchInterval = 2 * time.Second

// fileStamp is what a change of a watched file changes.
type fileStamp struct {
	size    int64
	modTime time.Time
	missing bool
}

// watchedFiles are the files whose change triggers a reload: the main
// config, the policy files and their list and prompt files, the TLS
// certificates, keys and CAs of the sip: realms, and the verifier's trust
// roots, root directories (and every file in them: a root added, removed or
// replaced) and CRLs.
func watchedFiles(cfgPath string, cfg *configs.Config) []string {
	var out []string
	if cfgPath != "" {
		out = append(out, cfgPath)
	}
	for _, f := range cfg.Policy.Files {
		p := cfg.Resolve(f)
		out = append(out, p)
		// What decoded is watched even when the file is refused (a prompt
		// of the wrong format, say), so that fixing it reloads.
		var pf policy.File
		_ = configs.LoadFile(p, &pf)
		for _, l := range pf.Lists {
			if l.File != "" {
				if !filepath.IsAbs(l.File) {
					l.File = filepath.Join(filepath.Dir(p), l.File)
				}
				out = append(out, l.File)
			}
		}
		out = append(out, pf.PromptFiles()...)
	}
	out = append(out, sipConfig(cfg).TLSFiles()...)
	if vc := cfg.Verify; vc.Enabled {
		out = append(out, resolveAll(cfg, vc.TrustRoots)...)
		out = append(out, resolveAll(cfg, vc.CRLs)...)
		for _, d := range resolveAll(cfg, vc.TrustDirs) {
			out = append(out, d)
			ents, _ := os.ReadDir(d) // a missing directory is stamped missing
			for _, e := range ents {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	return out
}

// stamps reads the stamps of files.
func stamps(files []string) map[string]fileStamp {
	m := make(map[string]fileStamp, len(files))
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			m[f] = fileStamp{missing: true}
			continue
		}
		m[f] = fileStamp{size: st.Size(), modTime: st.ModTime()}
	}
	return m
}

// changed reports whether any file's stamp differs from before.
func changed(before, now map[string]fileStamp) bool {
	if len(before) != len(now) {
		return true
	}
	for f, s := range now {
		if before[f] != s {
			return true
		}
	}
	return false
}
