package policy

import (
	"fmt"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/servername"
)

// compileSnapshot builds a snapshot from o and the external list (nil when
// there is none). It has no side effects.
func compileSnapshot(o *Options, list *externalList, info listInfo, c *counters) (*Snapshot, error) {
	p := o.Policy
	s := &Snapshot{
		serverName: o.ServerName,
		dryRun:     p.DryRun,
		locality:   p.LocalityChecks,
		list:       info,
		now:        o.Now,
		counters:   c,
	}
	switch p.Default {
	case config.PolicyAllow, "":
	case config.PolicyDeny:
		s.defaultDeny = true
	default:
		return nil, fmt.Errorf("policy.default: must be %q or %q, not %q", config.PolicyAllow, config.PolicyDeny, p.Default)
	}
	if err := s.allowNames.add("policy.allow", p.Allow); err != nil {
		return nil, err
	}
	if err := s.denyNames.add("policy.deny", p.Deny); err != nil {
		return nil, err
	}
	if list != nil {
		s.allowNames.addCompiled("list_file allow", list.allow, list.allowP)
		s.denyNames.addCompiled("list_file deny", list.deny, list.denyP)
	}
	if err := s.allowNets.add("policy.allow_networks", p.AllowNetworks); err != nil {
		return nil, err
	}
	if err := s.denyNets.add("policy.deny_networks", p.DenyNetworks); err != nil {
		return nil, err
	}
	var err error
	if s.endpoints, err = compileEndpointRules(p); err != nil {
		return nil, err
	}
	if err := s.rooms.add("policy.deny_rooms", p.DenyRooms); err != nil {
		return nil, err
	}
	if age := p.ListMaxAge.D(); age > 0 && info.file != "" {
		s.listDeadline = info.modified.Add(age)
	}
	return s, nil
}

// warnings lists settings that are valid but probably not what the
// operator meant.
func (s *Snapshot) warnings(o *Options) []string {
	var w []string
	if s.dryRun {
		w = append(w, "policy.dry_run is on: denials are logged and counted, nothing is denied")
	}
	if !s.defaultDeny && len(o.Policy.Allow) > 0 {
		w = append(w, fmt.Sprintf("policy.allow has %d entries but policy.default = \"allow\": allow entries only matter with default = \"deny\"", len(o.Policy.Allow)))
	}
	if s.defaultDeny && s.allowNames.len() == 0 {
		w = append(w, "policy.default = \"deny\" with no allow entries: federation with every server is denied")
	}
	if !s.locality {
		w = append(w, "policy.locality_checks is off: requests may ask about users of other servers")
	}
	if n := len(s.denyNames.regexps) + len(s.allowNames.regexps); n > 100 {
		w = append(w, fmt.Sprintf("%d regular-expression entries are tried one by one on every check; prefer globs", n))
	}
	return w
}

// normalise checks o and fills in defaults.
func (o Options) normalise() (Options, error) {
	if o.ServerName == "" {
		return o, fmt.Errorf("policy: server name is required")
	}
	if _, err := servername.Parse(o.ServerName); err != nil {
		return o, fmt.Errorf("policy: server name: %w", err)
	}
	if o.ListPollInterval <= 0 {
		o.ListPollInterval = DefaultListPollInterval
	}
	if o.MaxLimiterKeys <= 0 {
		o.MaxLimiterKeys = DefaultMaxLimiterKeys
	}
	return o, nil
}
