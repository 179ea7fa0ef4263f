package etcdinit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Users and roles Init creates.
const (
	Relay = "meshrelay-relay"
	Agent = "meshrelay-agent"
	Root  = "root"
)

// Auth is the part of clientv3.Auth that Init uses.
type Auth interface {
	Authenticate(ctx context.Context, name, password string) (*clientv3.AuthenticateResponse, error)
	AuthEnable(ctx context.Context) (*clientv3.AuthEnableResponse, error)
	AuthStatus(ctx context.Context) (*clientv3.AuthStatusResponse, error)
	UserAdd(ctx context.Context, name, password string) (*clientv3.AuthUserAddResponse, error)
	UserGet(ctx context.Context, name string) (*clientv3.AuthUserGetResponse, error)
	UserChangePassword(ctx context.Context, name, password string) (*clientv3.AuthUserChangePasswordResponse, error)
	UserGrantRole(ctx context.Context, user, role string) (*clientv3.AuthUserGrantRoleResponse, error)
	UserRevokeRole(ctx context.Context, name, role string) (*clientv3.AuthUserRevokeRoleResponse, error)
	RoleAdd(ctx context.Context, name string) (*clientv3.AuthRoleAddResponse, error)
	RoleGet(ctx context.Context, role string) (*clientv3.AuthRoleGetResponse, error)
	RoleGrantPermission(ctx context.Context, name, key, rangeEnd string, permType clientv3.PermissionType) (*clientv3.AuthRoleGrantPermissionResponse, error)
	RoleRevokePermission(ctx context.Context, role, key, rangeEnd string) (*clientv3.AuthRoleRevokePermissionResponse, error)
}

// Options are the passwords of the three users.
type Options struct {
	RootPassword, RelayPassword, AgentPassword string
	// Prefix is the key prefix the roles cover. Default keyspace.Root.
	Prefix string
	Logger *slog.Logger
}

// Validate refuses an empty password: etcd would create a user that cannot
// log in with one.
func (o Options) Validate() error {
	for name, pw := range map[string]string{"root": o.RootPassword, "relay": o.RelayPassword, "agent": o.AgentPassword} {
		if pw == "" {
			return fmt.Errorf("etcd-init: empty %s password", name)
		}
	}
	return nil
}

// Init brings auth to the state the package describes and returns what it
// changed (nothing when it was already there).
func Init(ctx context.Context, a Auth, opts Options) ([]string, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = keyspace.Root
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in := &initializer{a: a, log: log}
	st, err := a.AuthStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth status: %w", err)
	}
	in.authOn = st.Enabled
	end := clientv3.GetPrefixRangeEnd(opts.Prefix)
	steps := []func(context.Context) error{
		func(ctx context.Context) error {
			return in.role(ctx, Relay, &authpb.Permission{PermType: authpb.READWRITE, Key: []byte(opts.Prefix), RangeEnd: []byte(end)})
		},
		func(ctx context.Context) error {
			return in.role(ctx, Agent, &authpb.Permission{PermType: authpb.READ, Key: []byte(opts.Prefix), RangeEnd: []byte(end)})
		},
		func(ctx context.Context) error { return in.user(ctx, Relay, opts.RelayPassword, Relay, true) },
		func(ctx context.Context) error { return in.user(ctx, Agent, opts.AgentPassword, Agent, true) },
		// root keeps any other role an operator gave it.
		func(ctx context.Context) error { return in.user(ctx, Root, opts.RootPassword, Root, false) },
		in.enable,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return in.changed, err
		}
	}
	return in.changed, nil
}

type initializer struct {
	a       Auth
	log     *slog.Logger
	authOn  bool
	changed []string
}

func (in *initializer) did(what string, args ...any) {
	msg := fmt.Sprintf(what, args...)
	in.log.Info("etcd-init: " + msg)
	in.changed = append(in.changed, msg)
}

// role makes name exist with exactly the permission want.
func (in *initializer) role(ctx context.Context, name string, want *authpb.Permission) error {
	r, err := in.a.RoleGet(ctx, name)
	if errors.Is(err, rpctypes.ErrRoleNotFound) {
		if _, err := in.a.RoleAdd(ctx, name); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
			return fmt.Errorf("add role %s: %w", name, err)
		}
		in.did("added role %s", name)
		r, err = in.a.RoleGet(ctx, name)
	}
	if err != nil {
		return fmt.Errorf("get role %s: %w", name, err)
	}
	has := false
	for _, p := range r.Perm {
		if p.PermType == want.PermType && string(p.Key) == string(want.Key) && string(p.RangeEnd) == string(want.RangeEnd) {
			has = true
			continue
		}
		// Least privilege: a permission the role should not have goes.
		if _, err := in.a.RoleRevokePermission(ctx, name, string(p.Key), string(p.RangeEnd)); err != nil && !errors.Is(err, rpctypes.ErrPermissionNotGranted) {
			return fmt.Errorf("revoke %s [%q, %q) from role %s: %w", p.PermType, p.Key, p.RangeEnd, name, err)
		}
		in.did("revoked %s [%q, %q) from role %s", p.PermType, p.Key, p.RangeEnd, name)
	}
	if has {
		return nil
	}
	if _, err := in.a.RoleGrantPermission(ctx, name, string(want.Key), string(want.RangeEnd), clientv3.PermissionType(want.PermType)); err != nil {
		return fmt.Errorf("grant %s on %q to role %s: %w", want.PermType, want.Key, name, err)
	}
	in.did("granted %s on prefix %q to role %s", want.PermType, want.Key, name)
	return nil
}

// user makes name exist with password and role; with only, without any
// other role.
func (in *initializer) user(ctx context.Context, name, password, role string, only bool) error {
	u, err := in.a.UserGet(ctx, name)
	if errors.Is(err, rpctypes.ErrUserNotFound) {
		_, err = in.a.UserAdd(ctx, name, password)
		switch {
		case err == nil:
			in.did("added user %s", name)
		case errors.Is(err, rpctypes.ErrUserAlreadyExist): // a concurrent run added it
			if err := in.password(ctx, name, password); err != nil {
				return err
			}
		default:
			return fmt.Errorf("add user %s: %w", name, err)
		}
		u, err = in.a.UserGet(ctx, name)
	} else if err == nil {
		err = in.password(ctx, name, password)
		if err == nil {
			u, err = in.a.UserGet(ctx, name)
		}
	}
	if err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	if !slices.Contains(u.Roles, role) {
		if _, err := in.a.UserGrantRole(ctx, name, role); err != nil {
			return fmt.Errorf("grant role %s to user %s: %w", role, name, err)
		}
		in.did("granted role %s to user %s", role, name)
	}
	if only {
		for _, r := range u.Roles {
			if r == role {
				continue
			}
			if _, err := in.a.UserRevokeRole(ctx, name, r); err != nil && !errors.Is(err, rpctypes.ErrRoleNotGranted) {
				return fmt.Errorf("revoke role %s from user %s: %w", r, name, err)
			}
			in.did("revoked role %s from user %s", r, name)
		}
	}
	return nil
}

// password sets an existing user's password unless it already is the
// one given. With auth off, a password cannot be tried: it is set.
func (in *initializer) password(ctx context.Context, name, password string) error {
	if in.authOn {
		_, err := in.a.Authenticate(ctx, name, password)
		if err == nil {
			return nil
		}
		if !errors.Is(err, rpctypes.ErrAuthFailed) {
			return fmt.Errorf("check password of user %s: %w", name, err)
		}
	}
	if _, err := in.a.UserChangePassword(ctx, name, password); err != nil {
		return fmt.Errorf("set password of user %s: %w", name, err)
	}
	in.did("set the password of user %s", name)
	return nil
}

func (in *initializer) enable(ctx context.Context) error {
	if in.authOn {
		return nil
	}
	if _, err := in.a.AuthEnable(ctx); err != nil {
		return fmt.Errorf("enable auth: %w", err)
	}
	in.did("enabled auth")
	return nil
}
