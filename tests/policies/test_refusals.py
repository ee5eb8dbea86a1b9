"""FORBIDDEN messages in plain words: one table, every action a mutation can be refused."""

from __future__ import annotations

import re

from policies.vocabulary import NOUNS, VERBS, Action, Resource, refusal
from schema import schema
from schema.permissions import Guard

# Every mutation's refusal, read aloud. A new mutation adds its line here.
EXPECTED = {
    "createOrganisation": "Your roles do not allow creating organisations.",
    "createExternalAssessor": "Your roles do not allow creating external assessor profiles.",
    "createStaffMember": "Your roles do not allow creating staff members.",
    "createLocation": "Your roles do not allow creating locations.",
    "createDepartment": "Your roles do not allow creating departments.",
    "createLearner": "Your roles do not allow creating learners.",
    "createApprenticeRecord": "Your roles do not allow creating apprentice records.",
    "allocateAssessor": "Your roles do not allow allocating external assessors to learners.",
    "deallocateAssessor": "Your roles do not allow allocating external assessors to learners.",
    "assignRecords": "Your roles do not allow assigning apprentice records.",
    "unassignRecords": "Your roles do not allow assigning apprentice records.",
    "assignTrainingCoordinator": "Your roles do not allow assigning apprentice records.",
    "submitEvidence": "Your roles do not allow submitting evidence on apprentice records.",
    "signOffEvidence": "Your roles do not allow signing off or referring evidence.",
    "updateLearner": "Your roles do not allow changing learners.",
    "updateStaffMember": "Your roles do not allow changing staff members.",
    "deactivateStaffMember": "Your roles do not allow deactivating staff members.",
    "archiveApprenticeRecord": "Your roles do not allow archiving or restoring apprentice records.",
    "restoreApprenticeRecord": "Your roles do not allow archiving or restoring apprentice records.",
    "importLearners": "Your roles do not allow creating learners.",
    "createCourse": "Your roles do not allow creating courses.",
    "setLicencePool": "Your roles do not allow creating licence pools.",
    "allocateLicences": "Your roles do not allow allocating or recalling licences of learners.",
    "recallLicences": "Your roles do not allow allocating or recalling licences of learners.",
    "markLicenceLaunched": "Your roles do not allow launching licences.",
    "markLicenceCompleted": "Your roles do not allow completing licences.",
    "createAutoAllocationRule": "Your roles do not allow creating auto-allocation rules.",
    "previewAutoAllocationRule": "Your roles do not allow creating auto-allocation rules.",
    "deleteAutoAllocationRule": "Your roles do not allow deleting auto-allocation rules.",
    "createApiKey": "Your roles do not allow creating API keys.",
    "revokeApiKey": "Your roles do not allow revoking API keys.",
}


def test_every_mutation_refuses_in_plain_words() -> None:
    found = {}
    for name, field in schema._schema.mutation_type.fields.items():
        definition = field.extensions["strawberry-definition"]
        (guard,) = [e for e in definition.extensions if isinstance(e, Guard)]
        found[name] = refusal(guard.resource, guard.action)
    assert found == EXPECTED


def test_every_word_has_plain_english() -> None:
    assert set(NOUNS) == set(Resource)
    assert set(VERBS) == set(Action)
    for resource in Resource:
        for action in Action:
            for this in (False, True):
                message = refusal(resource, action, this=this)
                assert re.fullmatch(r"Your roles do not allow [a-z][A-Za-z -]+\.", message), message
    assert refusal(Resource.RECORD, Action.ARCHIVE, this=True) == (
        "Your roles do not allow archiving or restoring this apprentice record."
    )
