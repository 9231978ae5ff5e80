# Tasks must not run as root.
#
# A task runs as `spec.task.user`, by default the agent's unprivileged `meridian-task`
# account; root must be asked for (`user: root`, `user: "0"`, `user: "0:0"`). This rule
# finds (audit) or refuses (enforcement: deny) those that ask, except in the projects the
# parameter `allowedProjects` lists (platform tooling that needs it, by exception).
#
# Controls: NIST SP 800-53 AC-6 (least privilege), CM-7 (least functionality),
# ISO27001 A.8.2 (privileged access rights), BSI C5 IDM-06 (privileged access rights).
package meridian.baseline.no_root

default allowed_projects := []

allowed_projects := data.parameters.allowedProjects

task := object.get(object.get(input.object, "spec", {}), "task", {})

user := sprintf("%v", [object.get(task, "user", "")])

account := split(user, ":")[0]

root if account == "root"

root if account == "0"

violation contains {"msg": msg, "field": "spec.task.user"} if {
	input.object.kind == "Workload"
	root
	not object.get(input.object.metadata, "namespace", "") in allowed_projects
	msg := sprintf("%q runs the task as root: remove task.user to run as the unprivileged meridian-task account, or name another account (e.g. 1000:1000)", [user])
}
